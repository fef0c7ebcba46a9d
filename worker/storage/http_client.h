#pragma once
// HTTP(S) transfers through libcurl with the retry policy every remote scheme shares: exponential
// backoff with jitter on 5xx, 429 and connection errors (a body cut short among them), none on
// the other 4xx, which would only fail again.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace shears::worker {

struct RetryPolicy {
  int attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(10);
};

// Where a transfer stands, reported about twice a second and at the end.
struct TransferProgress {
  std::string name;  // what is moving, e.g. a file name
  int64_t bytes = 0;
  int64_t total = 0;  // 0 when unknown
  double bytes_per_second = 0.0;
};
using ProgressFn = std::function<void(const TransferProgress&)>;

struct Downloaded {
  int64_t bytes = 0;
  std::string sha256;  // of the whole file
  std::string etag;    // as the server sent it, quotes removed; empty when none
};

class HttpClient {
 public:
  explicit HttpClient(RetryPolicy retry = {});

  // Downloads `url` into `path`, through `path`.part renamed when complete. A transfer that breaks
  // resumes from the bytes received with a Range request; the digest covers the whole file.
  // Errors name the URL: NOT_FOUND (404), PERMISSION_DENIED (401, 403), FAILED_PRECONDITION (other
  // 4xx), UNAVAILABLE (still failing after the retries).
  absl::StatusOr<Downloaded> Download(const std::string& url, const std::vector<std::string>& headers,
                                      const std::string& path, const std::string& name,
                                      const ProgressFn& progress) const;

 private:
  RetryPolicy retry_;
};

}  // namespace shears::worker
