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

// AWS Signature V4 by libcurl (CURLOPT_AWS_SIGV4, e.g. "aws:amz:us-east-1:s3") with `userpwd`
// "key:secret"; empty: no signing.
struct HttpAuth {
  std::string aws_sigv4;
  std::string userpwd;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;
  HttpAuth auth;
  std::string body;       // sent as the body unless `body_file` is set
  std::string body_file;  // else [body_offset, body_offset + body_size) of this file
  int64_t body_offset = 0;
  int64_t body_size = 0;
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::string etag;  // quotes kept, as S3's multipart completion wants them
  int64_t content_length = -1;  // from the header (a HEAD's size); -1 when absent
};

struct Downloaded {
  int64_t bytes = 0;
  std::string sha256;  // of the whole file
  std::string etag;    // as the server sent it, quotes removed; empty when none
};

// Told the body bytes each request moved, failed attempts included, for the worker's metrics.
struct TransferCounters {
  std::function<void(int64_t bytes)> downloaded;
  std::function<void(int64_t bytes)> uploaded;
};

// What transfers for URIs a job named may reach (its tenant's URI policy, common/uri_policy.h):
// every connection's address is checked as it opens (a redirect's and a re-resolved name's too), and
// every redirect's target before it is followed. A refusal is PERMISSION_DENIED, never retried.
struct UrlGuard {
  bool private_networks = true;  // loopback, private (RFC 1918, fc00::/7) and link-local addresses
  std::function<bool(const std::string& url)> allowed;  // redirect targets; null: any
};

class HttpClient {
 public:
  // `max_download_bytes` (0: none) bounds each file Download fetches: a larger one stops as soon
  // as its size (or its bytes) say so, RESOURCE_EXHAUSTED naming the limit, never retried.
  explicit HttpClient(RetryPolicy retry = {}, TransferCounters counters = {}, UrlGuard guard = {},
                      int64_t max_download_bytes = 0);

  // Downloads `url` into `path`, through `path`.part renamed when complete. A transfer that breaks
  // resumes from the bytes received with a Range request; the digest covers the whole file.
  // Errors name the URL: NOT_FOUND (404), PERMISSION_DENIED (401, 403), FAILED_PRECONDITION (other
  // 4xx), UNAVAILABLE (still failing after the retries).
  absl::StatusOr<Downloaded> Download(const std::string& url, const std::vector<std::string>& headers,
                                      const std::string& path, const std::string& name, const ProgressFn& progress,
                                      const HttpAuth& auth = {}) const;

  // One request under the retry policy. A 2xx response comes back; any other final status is an
  // error as for Download, its message carrying the method, the URL and the start of the body.
  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) const;
  // `length` bytes of the GET `request` from `offset` (a Range request; fewer at the end).
  absl::StatusOr<std::string> ReadRange(HttpRequest request, int64_t offset, int64_t length) const;

 private:
  void Count(void* curl) const;

  RetryPolicy retry_;
  TransferCounters counters_;
  UrlGuard guard_;
  int64_t max_download_bytes_;
};

}  // namespace shears::worker
