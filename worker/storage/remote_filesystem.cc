#include "worker/storage/remote_filesystem.h"

#include <cstdlib>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "common/uri.h"

namespace shears::worker {
namespace fs = std::filesystem;
namespace {

absl::Status ReadOnly(const std::string& uri) {
  return absl::InvalidArgumentError(absl::StrCat(uri, ": this scheme can be read from but not written to"));
}

// The last path segment of a URL, without query or fragment.
std::string FileName(const std::string& url) {
  std::string path = url.substr(0, url.find_first_of("?#"));
  while (!path.empty() && path.back() == '/') path.pop_back();
  std::string name = path.substr(path.rfind('/') + 1);
  return name.empty() ? "download" : name;
}

// A file name a repository may list: no directories, nothing hidden.
bool PlainFileName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name.find('\\') == std::string::npos &&
         name[0] != '.';
}

constexpr const char* kTokenizerFiles[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                           "special_tokens_map.json", "generation_config.json"};

}  // namespace

// The tenant's URI policy over the connections and redirects of URLs a job named.
UrlGuard GuardOf(const StorageOptions& options) {
  UrlGuard guard;
  if (options.policy == nullptr) return guard;
  guard.private_networks = options.policy->private_networks;
  guard.allowed = [policy = options.policy](const std::string& url) { return policy->Allows(url); };
  return guard;
}

ReadOnlyRemoteFileSystem::ReadOnlyRemoteFileSystem(const StorageOptions& options, UrlGuard guard)
    : client_(options.retry, options.counters, std::move(guard), options.max_download_bytes),
      cache_((fs::path(options.cache_dir) / "cache").string(), options.cache_max_bytes,
             options.credentials ? options.credentials->Fingerprint() : ""),
      hf_token_(options.credentials ? options.credentials->hf_token : "") {}

HttpFileSystem::HttpFileSystem(const StorageOptions& options) : ReadOnlyRemoteFileSystem(options, GuardOf(options)) {}

// The Hub endpoint is the operator's (HF_ENDPOINT), and redirects to its CDN are its own: no guard.
HubFileSystem::HubFileSystem(const StorageOptions& options) : ReadOnlyRemoteFileSystem(options, UrlGuard{}) {
  use_environment_token_ = !options.credentials.has_value();
}

absl::Status ReadOnlyRemoteFileSystem::Put(const std::string&, const std::string& uri) { return ReadOnly(uri); }
absl::Status ReadOnlyRemoteFileSystem::Delete(const std::string& uri) { return ReadOnly(uri); }

absl::StatusOr<std::vector<FileInfo>> ReadOnlyRemoteFileSystem::List(const std::string& uri) {
  return absl::UnimplementedError(absl::StrCat(uri, ": this scheme cannot list"));
}
absl::StatusOr<FileInfo> ReadOnlyRemoteFileSystem::Stat(const std::string& uri) {
  return absl::UnimplementedError(absl::StrCat(uri, ": names a repository; it is fetched whole"));
}
absl::StatusOr<std::string> ReadOnlyRemoteFileSystem::ReadRange(const std::string& uri, int64_t, int64_t) {
  return absl::UnimplementedError(absl::StrCat(uri, ": names a repository; it is fetched whole"));
}

absl::StatusOr<FileInfo> HttpFileSystem::Stat(const std::string& uri) {
  HttpRequest head;
  head.method = "HEAD";
  head.url = uri;
  SHEARS_ASSIGN_OR_RETURN(HttpResponse r, client_.Send(head));
  return FileInfo{uri, std::max<int64_t>(0, r.content_length), r.etag};
}

absl::StatusOr<std::string> HttpFileSystem::ReadRange(const std::string& uri, int64_t offset, int64_t length) {
  return client_.ReadRange(HttpRequest{"GET", uri}, offset, length);
}

absl::StatusOr<std::string> HttpFileSystem::Localize(const std::string& uri, const ProgressFn& progress) {
  const std::string name = FileName(uri);
  SHEARS_ASSIGN_OR_RETURN(std::string dir, cache_.Get(uri, [&](const std::string& dir) -> absl::Status {
    return client_.Download(uri, {}, (fs::path(dir) / name).string(), name, progress).status();
  }));
  return (fs::path(dir) / name).string();
}


absl::StatusOr<std::string> HubFileSystem::Localize(const std::string& uri, const ProgressFn& progress) {
  SHEARS_ASSIGN_OR_RETURN(Uri parsed, ParseUri(uri));
  std::string repo = parsed.rest, revision = "main";
  if (const size_t at = repo.find('@'); at != std::string::npos) {
    revision = repo.substr(at + 1);
    repo = repo.substr(0, at);
  }
  const size_t slash = repo.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == repo.size() ||
      repo.find('/', slash + 1) != std::string::npos || revision.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(uri, ": expected hf://org/name or hf://org/name@revision"));
  }
  const char* env_endpoint = std::getenv("HF_ENDPOINT");
  const std::string endpoint(
      absl::StripSuffix(env_endpoint != nullptr && *env_endpoint ? env_endpoint : "https://huggingface.co", "/"));
  std::vector<std::string> headers;
  const char* env_token = use_environment_token_ ? std::getenv("HF_TOKEN") : nullptr;
  const std::string token = env_token != nullptr ? env_token : hf_token_;
  if (!token.empty()) headers.push_back(absl::StrCat("Authorization: Bearer ", token));
  auto fetch = [&](const std::string& dir) -> absl::Status {
    auto get = [&](const std::string& file) {
      return client_.Download(absl::StrCat(endpoint, "/", repo, "/resolve/", revision, "/", file), headers,
                              (fs::path(dir) / file).string(), file, progress);
    };
    SHEARS_RETURN_IF_ERROR(get("config.json").status());
    auto index = get("model.safetensors.index.json");
    if (absl::IsNotFound(index.status())) {
      SHEARS_RETURN_IF_ERROR(get("model.safetensors").status());
    } else {
      SHEARS_RETURN_IF_ERROR(index.status());
      SHEARS_ASSIGN_OR_RETURN(std::string text, ReadFile((fs::path(dir) / "model.safetensors.index.json").string()));
      auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (!json.is_object() || !json.contains("weight_map") || !json["weight_map"].is_object()) {
        return absl::DataLossError(absl::StrCat(uri, ": model.safetensors.index.json has no weight_map"));
      }
      std::set<std::string> shards;
      for (const auto& [tensor, file] : json["weight_map"].items()) {
        if (!file.is_string() || !PlainFileName(file.get<std::string>())) {
          return absl::DataLossError(
              absl::StrCat(uri, ": the index maps ", tensor, " to a file name Shears will not fetch"));
        }
        shards.insert(file.get<std::string>());
      }
      for (const auto& shard : shards) SHEARS_RETURN_IF_ERROR(get(shard).status());
    }
    for (const char* file : kTokenizerFiles) {
      if (auto got = get(file); !got.ok() && !absl::IsNotFound(got.status())) return got.status();
    }
    return absl::OkStatus();
  };
  return cache_.Get(absl::StrCat("hf ", endpoint, " ", repo, "@", revision), fetch);
}

}  // namespace shears::worker
