#pragma once

#include <string>
#include <vector>

#include "worker/storage/filesystem.h"

namespace shears::worker {

// file:// URIs and bare absolute paths, within the operator's allowed roots and the job's tenant's
// (each list that is not empty must hold the path, `..` and links resolved). A directory handed
// to the engine holds no link that leads out of them, so a link inside a model directory cannot
// make the engine read, or the output copy, a file elsewhere.
class LocalFileSystem final : public FileSystem {
 public:
  explicit LocalFileSystem(std::vector<std::string> roots, std::vector<std::string> tenant_roots = {})
      : roots_(std::move(roots)), tenant_roots_(std::move(tenant_roots)) {}
  absl::StatusOr<FileInfo> Stat(const std::string& uri) override;
  absl::StatusOr<std::string> ReadRange(const std::string& uri, int64_t offset, int64_t length) override;
  absl::StatusOr<std::vector<FileInfo>> List(const std::string& uri) override;
  absl::StatusOr<std::string> Localize(const std::string& uri, const ProgressFn& progress) override;
  absl::Status Put(const std::string& local_path, const std::string& uri) override;
  absl::Status Move(const std::string& local_path, const std::string& uri) override;
  absl::Status Delete(const std::string& uri) override;

 private:
  // PERMISSION_DENIED unless `uri` lies within both lists of roots.
  absl::Status CheckRoots(const std::string& uri) const;

  std::vector<std::string> roots_;
  std::vector<std::string> tenant_roots_;
};

}  // namespace shears::worker
