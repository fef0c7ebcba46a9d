#include "worker/storage/local_filesystem.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "common/uri.h"

namespace shears::worker {
namespace fs = std::filesystem;

absl::StatusOr<std::string> LocalFileSystem::Localize(const std::string& uri, const ProgressFn&) {
  SHEARS_RETURN_IF_ERROR(CheckFileRoots(uri, roots_));
  SHEARS_ASSIGN_OR_RETURN(std::string path, LocalPath(uri));
  if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat(uri, ": no such file or directory"));
  return path;
}

absl::Status LocalFileSystem::Put(const std::string& local_path, const std::string& uri) {
  SHEARS_RETURN_IF_ERROR(CheckFileRoots(uri, roots_));
  SHEARS_ASSIGN_OR_RETURN(std::string path, LocalPath(uri));
  SHEARS_RETURN_IF_ERROR(MakeDirectories(fs::path(path).parent_path().string()));
  return CopyFileAtomically(local_path, path);
}

absl::Status LocalFileSystem::Delete(const std::string& uri) {
  SHEARS_RETURN_IF_ERROR(CheckFileRoots(uri, roots_));
  SHEARS_ASSIGN_OR_RETURN(std::string path, LocalPath(uri));
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("remove ", path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace shears::worker
