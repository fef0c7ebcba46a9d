#pragma once
// s3://bucket/key and s3://bucket/prefix on any S3-compatible store, signed with AWS Signature V4
// by libcurl (which does not add x-amz-content-sha256, so every request sends it). Credentials
// and place come from the standard variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, AWS_REGION (default us-east-1), AWS_ENDPOINT_URL for non-AWS stores, and
// SHEARS_S3_ADDRESSING=path|virtual (default: path with an endpoint URL, virtual-hosted without).
//
// A URI naming an object localizes to that file; one naming a prefix to a directory of every
// object under it (a model). Files larger than a part go up as a multipart upload whose parts are
// sent in parallel and retried, and aborted when one fails for good.

#include <string>
#include <utility>
#include <vector>

#include "worker/storage/download_cache.h"
#include "worker/storage/filesystem.h"
#include "worker/storage/http_client.h"

namespace shears::worker {

struct S3Config {
  std::string access_key, secret_key, session_token;
  std::string region = "us-east-1";
  std::string endpoint;  // scheme://host[:port], no trailing slash
  bool path_style = false;
  static S3Config FromEnvironment();
  // A tenant's keys (--tenant-credentials) over the environment's region and endpoint; without
  // them, FromEnvironment.
  static S3Config For(const std::optional<StorageCredentials>& credentials);
};

class S3FileSystem final : public FileSystem {
 public:
  S3FileSystem(const StorageOptions& options, S3Config config);
  absl::StatusOr<FileInfo> Stat(const std::string& uri) override;
  absl::StatusOr<std::string> ReadRange(const std::string& uri, int64_t offset, int64_t length) override;
  absl::StatusOr<std::vector<FileInfo>> List(const std::string& uri) override;
  absl::StatusOr<std::string> Localize(const std::string& uri, const ProgressFn& progress) override;
  absl::Status Put(const std::string& local_path, const std::string& uri) override;
  absl::Status Delete(const std::string& uri) override;

 private:
  struct Object {
    std::string key, etag;
    int64_t size = 0;
  };

  // `query` is already canonical: its parameters sorted and encoded.
  std::string Url(const std::string& bucket, const std::string& key, const std::string& query = "") const;
  HttpRequest Request(const std::string& method, const std::string& url, const std::string& payload_sha256) const;
  absl::StatusOr<std::vector<Object>> ListObjects(const std::string& bucket, const std::string& prefix) const;
  absl::Status PutMultipart(const std::string& local_path, const std::string& bucket, const std::string& key,
                            int64_t size) const;

  S3Config config_;
  HttpClient client_;
  DownloadCache cache_;
  int64_t part_bytes_;
};

}  // namespace shears::worker
