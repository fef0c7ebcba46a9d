#include "worker/storage/local_filesystem.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "common/uri.h"

namespace shears::worker {
namespace fs = std::filesystem;

absl::Status LocalFileSystem::CheckRoots(const std::string& uri) const {
  SHEARS_RETURN_IF_ERROR(CheckFileRoots(uri, roots_));
  return CheckFileRoots(uri, tenant_roots_);
}

absl::StatusOr<FileInfo> LocalFileSystem::Stat(const std::string& uri) {
  SHEARS_RETURN_IF_ERROR(CheckRoots(uri));
  SHEARS_ASSIGN_OR_RETURN(std::string path, LocalPath(uri));
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return absl::NotFoundError(absl::StrCat(uri, ": no such file"));
  return FileInfo{uri, static_cast<int64_t>(fs::file_size(path, ec)), ""};
}

absl::StatusOr<std::string> LocalFileSystem::ReadRange(const std::string& uri, int64_t offset, int64_t length) {
  SHEARS_RETURN_IF_ERROR(CheckRoots(uri));
  SHEARS_ASSIGN_OR_RETURN(std::string path, LocalPath(uri));
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(uri, ": no such file"));
  in.seekg(offset);
  std::string out(static_cast<size_t>(std::max<int64_t>(0, length)), '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(std::max<std::streamsize>(0, in.gcount())));
  return out;
}

absl::StatusOr<std::vector<FileInfo>> LocalFileSystem::List(const std::string& uri) {
  SHEARS_RETURN_IF_ERROR(CheckRoots(uri));
  SHEARS_ASSIGN_OR_RETURN(std::string path, LocalPath(uri));
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return absl::NotFoundError(absl::StrCat(uri, ": no such directory"));
  std::vector<FileInfo> out;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec)) {
      out.push_back({"file://" + it->path().string(), static_cast<int64_t>(it->file_size(ec)), ""});
    }
  }
  std::sort(out.begin(), out.end(), [](const FileInfo& a, const FileInfo& b) { return a.uri < b.uri; });
  return out;
}

absl::StatusOr<std::string> LocalFileSystem::Localize(const std::string& uri, const ProgressFn&) {
  SHEARS_RETURN_IF_ERROR(CheckRoots(uri));
  SHEARS_ASSIGN_OR_RETURN(std::string path, LocalPath(uri));
  if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat(uri, ": no such file or directory"));
  if (roots_.empty() && tenant_roots_.empty()) return path;
  // Every link inside the directory resolves within the roots too (the directory itself did above).
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_symlink(ec)) continue;
    const std::string target = fs::weakly_canonical(it->path(), ec).string();
    if (absl::Status st = CheckRoots("file://" + target); !st.ok()) {
      return absl::PermissionDeniedError(absl::StrCat(uri, ": ", it->path().lexically_relative(path).string(),
                                                      " is a symbolic link to ", target,
                                                      ", outside the allowed file roots"));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat(uri, ": ", ec.message()));
  return path;
}

absl::Status LocalFileSystem::Put(const std::string& local_path, const std::string& uri) {
  SHEARS_RETURN_IF_ERROR(CheckRoots(uri));
  SHEARS_ASSIGN_OR_RETURN(std::string path, LocalPath(uri));
  SHEARS_RETURN_IF_ERROR(MakeDirectories(fs::path(path).parent_path().string()));
  return CopyFileAtomically(local_path, path);
}

absl::Status LocalFileSystem::Move(const std::string& local_path, const std::string& uri) {
  SHEARS_RETURN_IF_ERROR(CheckRoots(uri));
  SHEARS_ASSIGN_OR_RETURN(std::string path, LocalPath(uri));
  SHEARS_RETURN_IF_ERROR(MakeDirectories(fs::path(path).parent_path().string()));
  return MoveFileAtomically(local_path, path);
}

absl::Status LocalFileSystem::Delete(const std::string& uri) {
  SHEARS_RETURN_IF_ERROR(CheckRoots(uri));
  SHEARS_ASSIGN_OR_RETURN(std::string path, LocalPath(uri));
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("remove ", path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace shears::worker
