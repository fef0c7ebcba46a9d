#pragma once
// Picks the file system of a URI's scheme; above the implementations, never beside the interface.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/storage/filesystem.h"

namespace shears::worker {

// INVALID_ARGUMENT naming the scheme when this build has no file system for it.
absl::StatusOr<std::unique_ptr<FileSystem>> FileSystemFor(const std::string& uri, const StorageOptions& options);

}  // namespace shears::worker
