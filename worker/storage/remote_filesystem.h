#pragma once
// The read-only remote schemes: http(s):// single files and hf:// model repositories, fetched
// through the download cache.

#include <string>

#include "worker/storage/download_cache.h"
#include "worker/storage/filesystem.h"
#include "worker/storage/http_client.h"

namespace shears::worker {

// What both share: the client, the cache, and refusing writes.
class ReadOnlyRemoteFileSystem : public FileSystem {
 public:
  ReadOnlyRemoteFileSystem(const StorageOptions& options, UrlGuard guard);
  absl::Status Put(const std::string& local_path, const std::string& uri) final;
  absl::Status Delete(const std::string& uri) final;
  // A web server has no listing; the Hub scheme names whole repositories, which Localize fetches.
  absl::StatusOr<std::vector<FileInfo>> List(const std::string& uri) override;
  absl::StatusOr<FileInfo> Stat(const std::string& uri) override;
  absl::StatusOr<std::string> ReadRange(const std::string& uri, int64_t offset, int64_t length) override;

 protected:
  HttpClient client_;
  DownloadCache cache_;
  std::string hf_token_;  // the tenant's (StorageOptions::credentials)
};

// http:// and https://: the file at the URL.
// Guarded by the job's tenant's URI policy (StorageOptions::policy): no connection to a private
// address unless it allows them, no redirect out of its prefixes.
class HttpFileSystem final : public ReadOnlyRemoteFileSystem {
 public:
  explicit HttpFileSystem(const StorageOptions& options);
  absl::StatusOr<std::string> Localize(const std::string& uri, const ProgressFn& progress) override;
  absl::StatusOr<FileInfo> Stat(const std::string& uri) override;  // HEAD
  absl::StatusOr<std::string> ReadRange(const std::string& uri, int64_t offset, int64_t length) override;
};

// hf://org/name[@revision] (default revision "main"): config.json, the tokenizer files there are,
// and the safetensors weights (the shards model.safetensors.index.json names, or
// model.safetensors), each from {HF_ENDPOINT}/{org}/{name}/resolve/{revision}/{file}, with
// HF_TOKEN as a bearer token when set. HF_ENDPOINT defaults to https://huggingface.co.
class HubFileSystem final : public ReadOnlyRemoteFileSystem {
 public:
  // With the tenant's credentials, their hf_token (none: anonymous); else HF_TOKEN.
  explicit HubFileSystem(const StorageOptions& options);
  absl::StatusOr<std::string> Localize(const std::string& uri, const ProgressFn& progress) override;

 private:
  bool use_environment_token_ = true;
};

}  // namespace shears::worker
