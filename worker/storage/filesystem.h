#pragma once
// One interface over every place a model, a dataset or an output can live, chosen by URI scheme,
// so the job runner never looks at a scheme itself.

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace shears::worker {

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // A local path holding the file or directory at `uri`; remote schemes fetch into `cache_dir`.
  virtual absl::StatusOr<std::string> Localize(const std::string& uri, const std::string& cache_dir) = 0;
  // Publishes a local file at `uri` so that a reader sees all of it or nothing.
  virtual absl::Status Put(const std::string& local_path, const std::string& uri) = 0;
};

absl::StatusOr<std::unique_ptr<FileSystem>> FileSystemFor(const std::string& uri);
// `base` + "/" + `name`, without doubling the slash.
std::string JoinUri(const std::string& base, const std::string& name);

}  // namespace shears::worker
