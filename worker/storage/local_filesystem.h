#pragma once

#include <string>
#include <vector>

#include "worker/storage/filesystem.h"

namespace shears::worker {

// file:// URIs and bare absolute paths, within the allowed roots.
class LocalFileSystem final : public FileSystem {
 public:
  explicit LocalFileSystem(std::vector<std::string> roots) : roots_(std::move(roots)) {}
  absl::StatusOr<FileInfo> Stat(const std::string& uri) override;
  absl::StatusOr<std::string> ReadRange(const std::string& uri, int64_t offset, int64_t length) override;
  absl::StatusOr<std::vector<FileInfo>> List(const std::string& uri) override;
  absl::StatusOr<std::string> Localize(const std::string& uri, const ProgressFn& progress) override;
  absl::Status Put(const std::string& local_path, const std::string& uri) override;
  absl::Status Move(const std::string& local_path, const std::string& uri) override;
  absl::Status Delete(const std::string& uri) override;

 private:
  std::vector<std::string> roots_;
};

}  // namespace shears::worker
