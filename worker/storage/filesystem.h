#pragma once
// One interface over every place a model, a dataset or an output can live, chosen by URI scheme
// (in the spirit of Triton's filesystem layer) in filesystem_factory.h, so the job runner never
// looks at a scheme itself:
//   file://           local paths, confined to the operator's allowed roots;
//   http://, https:// single files, downloaded with resume and retries into the cache;
//   hf://org/name[@revision]  a Hub-style model repository, fetched file by file into the cache;
//   s3://bucket/key    any S3-compatible store, read and written.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/uri_policy.h"
#include "worker/storage/http_client.h"

namespace shears::worker {

// A tenant's storage credentials (--tenant-credentials): used for its jobs instead of the
// worker's environment, so that a job reaches only what its own team's keys reach.
struct StorageCredentials {
  std::string aws_access_key_id, aws_secret_access_key, aws_session_token;
  std::string aws_region, aws_endpoint_url;  // empty: the worker's environment's
  std::string hf_token;
  // Tells entries fetched with other credentials apart in the download cache: a private model
  // one team's token fetched is not another team's cache hit.
  std::string Fingerprint() const;
};

struct StorageOptions {
  std::vector<std::string> allowed_file_roots;  // empty: any local path
  // The job's tenant's URI policy (--uri-policy); null: none. Its file:// prefixes confine local
  // paths further, its private_networks and prefixes guard http(s) connections and redirects.
  std::shared_ptr<const TenantUriPolicy> policy;
  // The job's tenant's credentials; unset: the worker's environment (AWS_*, HF_TOKEN).
  std::optional<StorageCredentials> credentials;
  std::string cache_dir;                        // downloads land here, kept for later jobs
  int64_t cache_max_bytes = int64_t{100} << 30;
  // Each file fetched over the network (--max-download-bytes); 0: none beyond the cache's bound.
  int64_t max_download_bytes = 0;
  RetryPolicy retry;
  int64_t s3_part_bytes = int64_t{8} << 20;  // larger files go up as multipart uploads
  TransferCounters counters;                  // bytes over the network, for the metrics
};

struct FileInfo {
  std::string uri;
  int64_t size = 0;
  std::string etag;  // where the scheme has one
};

// Every verb takes a URI; a scheme that cannot do one (listing a web server, writing to the Hub)
// answers UNIMPLEMENTED or INVALID_ARGUMENT saying so.
class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // The size (and ETag) of the file at `uri`; NOT_FOUND when there is none.
  virtual absl::StatusOr<FileInfo> Stat(const std::string& uri) = 0;
  // `length` bytes from `offset` (fewer at the end of the file).
  virtual absl::StatusOr<std::string> ReadRange(const std::string& uri, int64_t offset, int64_t length) = 0;
  // Every file under the directory or prefix `uri`, recursively.
  virtual absl::StatusOr<std::vector<FileInfo>> List(const std::string& uri) = 0;
  // A local path holding the file or directory at `uri`; remote schemes fetch it into the cache
  // (once per worker: a later job finds it there), reporting the bytes as they arrive.
  virtual absl::StatusOr<std::string> Localize(const std::string& uri, const ProgressFn& progress) = 0;
  // Publishes a local file at `uri` so that a reader sees all of it or nothing.
  virtual absl::Status Put(const std::string& local_path, const std::string& uri) = 0;
  // As Put, for a local file the caller is done with: a scheme that can takes it over without a
  // copy (file:// on the same filesystem renames it); `local_path` may be gone afterwards.
  virtual absl::Status Move(const std::string& local_path, const std::string& uri) { return Put(local_path, uri); }
  // Removes the file at `uri`; one that is not there is no error.
  virtual absl::Status Delete(const std::string& uri) = 0;
};

// `base` + "/" + `name`, without doubling the slash.
std::string JoinUri(const std::string& base, const std::string& name);

}  // namespace shears::worker
