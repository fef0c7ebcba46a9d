#include "worker/storage/download_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/sha256.h"

namespace shears::worker {
namespace fs = std::filesystem;
namespace {

constexpr char kComplete[] = ".complete";

// An flock held for the object's lifetime.
class FileLock {
 public:
  FileLock(const std::string& path, bool wait) : fd_(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_ >= 0 && flock(fd_, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) close(fd_);
  }
  bool held() const { return fd_ >= 0; }

 private:
  int fd_;
};

int64_t DirectoryBytes(const fs::path& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec)) total += static_cast<int64_t>(it->file_size(ec));
  }
  return total;
}

// What `.complete` records of an entry's directory: each regular file's relative path, size and
// SHA-256, in path order. Anything but regular files and directories is an error.
absl::StatusOr<nlohmann::json> Record(const fs::path& dir) {
  std::map<std::string, nlohmann::json> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().lexically_relative(dir).string();  // links not followed
    if (name == kComplete) continue;
    const auto status = it->symlink_status(ec);
    if (fs::is_directory(status)) continue;
    if (!fs::is_regular_file(status)) return absl::DataLossError(absl::StrCat(name, " is not a regular file"));
    auto digest = Sha256File(it->path().string());
    if (!digest.ok()) return digest.status();
    files[name] = {{"size", static_cast<int64_t>(it->file_size(ec))}, {"sha256", *digest}};
  }
  if (ec) return absl::InternalError(absl::StrCat(dir.string(), ": ", ec.message()));
  nlohmann::json out = nlohmann::json::object();
  for (auto& [name, file] : files) out[name] = std::move(file);
  return out;
}

// Whether the entry's files are exactly what `.complete` recorded when they were fetched.
bool Intact(const fs::path& entry, const std::string& key) {
  auto recorded = nlohmann::json::parse(ReadFile((entry / kComplete).string()).value_or(""), nullptr, false);
  if (!recorded.is_object() || recorded.value("key", "") != key || !recorded.contains("files")) return false;
  auto now = Record(entry);
  return now.ok() && *now == recorded["files"];
}

}  // namespace

absl::StatusOr<std::string> DownloadCache::Get(const std::string& key,
                                               const std::function<absl::Status(const std::string& dir)>& fetch,
                                               bool* hit) {
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) return absl::InternalError(absl::StrCat("cache ", root_, ": ", ec.message()));
  const std::string scoped = scope_.empty() ? key : absl::StrCat(key, " (credentials ", scope_, ")");
  const fs::path entry = fs::path(root_) / Sha256Hex(scoped).substr(0, 24);
  FileLock lock(entry.string() + ".lock", /*wait=*/true);
  if (!lock.held()) return absl::InternalError(absl::StrCat("cannot lock cache entry ", entry.string()));
  const bool intact = fs::exists(entry / kComplete) && Intact(entry, scoped);
  if (hit != nullptr) *hit = intact;
  if (intact) {
    fs::last_write_time(entry / kComplete, fs::file_time_type::clock::now(), ec);  // recently used
    return entry.string();
  }
  fs::remove_all(entry, ec);
  const fs::path partial = entry.string() + ".partial";
  fs::remove_all(partial, ec);
  fs::create_directories(partial, ec);
  if (absl::Status st = fetch(partial.string()); !st.ok()) {
    fs::remove_all(partial, ec);
    return st;
  }
  auto files = Record(partial);
  if (!files.ok()) {
    fs::remove_all(partial, ec);
    return absl::Status(files.status().code(), absl::StrCat("cache entry for ", key, ": ", files.status().message()));
  }
  std::ofstream(partial / kComplete) << nlohmann::json{{"key", scoped}, {"files", *files}}.dump() << "\n";
  fs::rename(partial, entry, ec);
  if (ec) return absl::InternalError(absl::StrCat("cache ", entry.string(), ": ", ec.message()));
  Evict(entry.string());
  return entry.string();
}

void DownloadCache::Evict(const std::string& keep) const {
  struct Entry {
    fs::path dir;
    fs::file_time_type used;
    int64_t bytes;
  };
  std::vector<Entry> entries;
  int64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    if (!e.is_directory() || !fs::exists(e.path() / kComplete)) continue;
    entries.push_back({e.path(), fs::last_write_time(e.path() / kComplete, ec), DirectoryBytes(e.path())});
    total += entries.back().bytes;
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.used < b.used; });
  for (const auto& e : entries) {
    if (total <= max_bytes_) break;
    if (e.dir.string() == keep) continue;
    FileLock lock(e.dir.string() + ".lock", /*wait=*/false);  // in use by another job: skip it
    if (!lock.held()) continue;
    fs::remove_all(e.dir, ec);
    total -= e.bytes;
  }
}

}  // namespace shears::worker
