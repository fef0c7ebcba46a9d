#pragma once

#include "worker/storage/filesystem.h"

namespace shears::worker {

// file:// URIs and bare absolute paths.
class LocalFileSystem final : public FileSystem {
 public:
  absl::StatusOr<std::string> Localize(const std::string& uri, const std::string& cache_dir) override;
  absl::Status Put(const std::string& local_path, const std::string& uri) override;
};

}  // namespace shears::worker
