#include "common/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shears {
namespace fs = std::filesystem;

namespace {

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  return absl::Status(errno == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kInternal,
                      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// Writes all of `data` to `fd`, retrying short writes.
absl::Status WriteAll(int fd, const char* data, size_t size, const std::string& path) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write", path);
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

template <typename Fill>
absl::Status WriteThroughTemp(const std::string& path, Fill fill) {
  std::string tmp = absl::StrCat(path, ".tmp-", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create", tmp);
  absl::Status st = fill(fd, tmp);
  if (st.ok() && ::fsync(fd) != 0) st = ErrnoError("fsync", tmp);
  ::close(fd);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = ErrnoError("rename to", path);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError("open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return ErrnoError("read", path);
  return ss.str();
}

absl::Status ReadFlagFiles(std::initializer_list<FlagFile> files) {
  for (const FlagFile& file : files) {
    if (file.path.empty()) continue;
    auto text = ReadFile(file.path);
    if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat(file.flag, " ", file.path, ": ", text.status().message()));
    *file.contents = std::move(*text);
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  return WriteThroughTemp(path, [&](int fd, const std::string& tmp) {
    return WriteAll(fd, contents.data(), contents.size(), tmp);
  });
}

absl::Status CopyFileAtomically(const std::string& from, const std::string& to) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return ErrnoError("open", from);
  absl::Status st = WriteThroughTemp(to, [&](int fd, const std::string& tmp) {
    char buf[1 << 16];
    for (;;) {
      ssize_t n = ::read(in, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError("read", from);
      if (n == 0) return absl::OkStatus();
      absl::Status w = WriteAll(fd, buf, static_cast<size_t>(n), tmp);
      if (!w.ok()) return w;
    }
  });
  ::close(in);
  return st;
}

absl::Status MoveFileAtomically(const std::string& from, const std::string& to) {
  int fd = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", from);
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) return ErrnoError("fsync", from);
  if (::rename(from.c_str(), to.c_str()) == 0) return absl::OkStatus();
  if (errno != EXDEV) return ErrnoError("rename to", to);
  SHEARS_RETURN_IF_ERROR(CopyFileAtomically(from, to));
  ::unlink(from.c_str());
  return absl::OkStatus();
}

absl::Status MakeDirectories(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("create directory ", path, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status RemoveAll(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("remove ", path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace shears
