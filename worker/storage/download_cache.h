#pragma once
// Remote models and datasets kept on the worker's disk, keyed by URI (an hf:// URI carries its
// revision), so that a second job on the same model does not fetch it again. An entry is a
// directory that a `.complete` record vouches for: the key and every file's size and SHA-256 as
// fetched. A hit is used only when its files are exactly those, as regular files (no link, nothing
// added, nothing changed): anything else that wrote there, a job's output included, makes it a
// miss, and the entry is fetched again. An flock on `<entry>.lock` makes a second job on this
// worker wait for the first one's download instead of starting its own. When the cache grows past
// its bound, the least recently used entries that no job holds go first.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace shears::worker {

class DownloadCache {
 public:
  // `scope` keeps apart entries fetched with different credentials (StorageCredentials::Fingerprint):
  // a model one team's keys fetched is no hit for a job with other keys, or none.
  DownloadCache(std::string root, int64_t max_bytes, std::string scope = "")
      : root_(std::move(root)), max_bytes_(max_bytes), scope_(std::move(scope)) {}

  // The directory of `key`'s entry. Unless it is complete and intact, `fetch` fills a fresh
  // directory first (a failed fetch leaves nothing behind). `hit` says whether the entry was there
  // already and intact.
  absl::StatusOr<std::string> Get(const std::string& key,
                                  const std::function<absl::Status(const std::string& dir)>& fetch, bool* hit = nullptr);

 private:
  void Evict(const std::string& keep) const;

  std::string root_;
  int64_t max_bytes_;
  std::string scope_;
};

}  // namespace shears::worker
