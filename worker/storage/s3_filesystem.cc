#include "worker/storage/s3_filesystem.h"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/uri.h"
#include "worker/storage/s3_xml.h"

namespace shears::worker {
namespace fs = std::filesystem;
namespace {

constexpr char kEmptySha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr int kUploadThreads = 4;

std::string Env(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v != nullptr && *v ? std::string(v) : fallback;
}

// RFC 3986 percent-encoding as SigV4 wants it; '/' kept in keys.
std::string Encode(const std::string& text, bool keep_slash) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += absl::StrFormat("%%%02X", c);
    }
  }
  return out;
}

struct Location {
  std::string bucket, key;
};

absl::StatusOr<Location> Parse(const std::string& uri) {
  SHEARS_ASSIGN_OR_RETURN(Uri parsed, ParseUri(uri));
  const size_t slash = parsed.rest.find('/');
  Location loc{parsed.rest.substr(0, slash), slash == std::string::npos ? "" : parsed.rest.substr(slash + 1)};
  if (parsed.scheme != "s3" || loc.bucket.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(uri, ": expected s3://bucket/key"));
  }
  return loc;
}

}  // namespace

S3Config S3Config::FromEnvironment() {
  S3Config c;
  c.access_key = Env("AWS_ACCESS_KEY_ID");
  c.secret_key = Env("AWS_SECRET_ACCESS_KEY");
  c.session_token = Env("AWS_SESSION_TOKEN");
  c.region = Env("AWS_REGION", Env("AWS_DEFAULT_REGION", "us-east-1"));
  const std::string endpoint = Env("AWS_ENDPOINT_URL");
  c.endpoint = std::string(absl::StripSuffix(endpoint.empty() ? "https://s3." + c.region + ".amazonaws.com" : endpoint, "/"));
  c.path_style = Env("SHEARS_S3_ADDRESSING", endpoint.empty() ? "virtual" : "path") == "path";
  return c;
}

S3Config S3Config::For(const std::optional<StorageCredentials>& credentials) {
  S3Config c = FromEnvironment();
  if (!credentials.has_value()) return c;
  c.access_key = credentials->aws_access_key_id;
  c.secret_key = credentials->aws_secret_access_key;
  c.session_token = credentials->aws_session_token;
  if (!credentials->aws_region.empty()) c.region = credentials->aws_region;
  if (!credentials->aws_endpoint_url.empty()) {
    c.endpoint = std::string(absl::StripSuffix(credentials->aws_endpoint_url, "/"));
    c.path_style = Env("SHEARS_S3_ADDRESSING", "path") == "path";
  }
  return c;
}

S3FileSystem::S3FileSystem(const StorageOptions& options, S3Config config)
    : config_(std::move(config)),
      client_(options.retry, options.counters, UrlGuard{}, options.max_download_bytes),
      cache_((fs::path(options.cache_dir) / "cache").string(), options.cache_max_bytes,
             options.credentials ? options.credentials->Fingerprint() : ""),
      part_bytes_(options.s3_part_bytes) {}

std::string S3FileSystem::Url(const std::string& bucket, const std::string& key, const std::string& query) const {
  std::string base = config_.endpoint + "/" + bucket;
  if (!config_.path_style) {
    const size_t host = config_.endpoint.find("://") + 3;
    base = config_.endpoint.substr(0, host) + bucket + "." + config_.endpoint.substr(host);
  }
  return absl::StrCat(base, "/", Encode(key, /*keep_slash=*/true), query.empty() ? "" : "?", query);
}

HttpRequest S3FileSystem::Request(const std::string& method, const std::string& url,
                                  const std::string& payload_sha256) const {
  HttpRequest r;
  r.method = method;
  r.url = url;
  r.headers.push_back("x-amz-content-sha256: " + payload_sha256);
  if (!config_.session_token.empty()) r.headers.push_back("x-amz-security-token: " + config_.session_token);
  if (!config_.access_key.empty()) {
    r.auth = {absl::StrCat("aws:amz:", config_.region, ":s3"), config_.access_key + ":" + config_.secret_key};
  }
  return r;
}

absl::StatusOr<std::vector<S3FileSystem::Object>> S3FileSystem::ListObjects(const std::string& bucket,
                                                                            const std::string& prefix) const {
  std::vector<Object> out;
  std::string token;
  do {
    std::string query = token.empty() ? "" : "continuation-token=" + Encode(token, false) + "&";
    absl::StrAppend(&query, "list-type=2&prefix=", Encode(prefix, false));
    std::string base = Url(bucket, "", query);
    SHEARS_ASSIGN_OR_RETURN(HttpResponse r, client_.Send(Request("GET", base, kEmptySha256)));
    S3ListPage page = ParseListPage(r.body);
    for (auto& object : page.objects) out.push_back({std::move(object.key), std::move(object.etag), object.size});
    // A store that answers the same page forever would hold the job forever.
    if (!page.next_token.empty() && page.next_token == token) {
      return absl::DataLossError(absl::StrCat("listing s3://", bucket, "/", prefix, ": the store repeats continuation token ",
                                              token));
    }
    token = page.next_token;
  } while (!token.empty());
  return out;
}

absl::StatusOr<FileInfo> S3FileSystem::Stat(const std::string& uri) {
  SHEARS_ASSIGN_OR_RETURN(Location loc, Parse(uri));
  auto head = client_.Send(Request("HEAD", Url(loc.bucket, loc.key), kEmptySha256));
  if (absl::IsNotFound(head.status())) return absl::NotFoundError(absl::StrCat(uri, ": no such object"));
  SHEARS_RETURN_IF_ERROR(head.status());
  return FileInfo{uri, std::max<int64_t>(0, head->content_length), head->etag};
}

absl::StatusOr<std::string> S3FileSystem::ReadRange(const std::string& uri, int64_t offset, int64_t length) {
  SHEARS_ASSIGN_OR_RETURN(Location loc, Parse(uri));
  return client_.ReadRange(Request("GET", Url(loc.bucket, loc.key), kEmptySha256), offset, length);
}

absl::StatusOr<std::vector<FileInfo>> S3FileSystem::List(const std::string& uri) {
  SHEARS_ASSIGN_OR_RETURN(Location loc, Parse(uri));
  const std::string prefix = loc.key.empty() || loc.key.back() == '/' ? loc.key : loc.key + "/";
  SHEARS_ASSIGN_OR_RETURN(std::vector<Object> objects, ListObjects(loc.bucket, prefix));
  std::vector<FileInfo> out;
  for (const auto& o : objects) out.push_back({absl::StrCat("s3://", loc.bucket, "/", o.key), o.size, o.etag});
  return out;
}

absl::StatusOr<std::string> S3FileSystem::Localize(const std::string& uri, const ProgressFn& progress) {
  SHEARS_ASSIGN_OR_RETURN(Location loc, Parse(uri));
  const HttpRequest get = Request("GET", "", kEmptySha256);
  auto fetch_into = [&](const std::vector<Object>& objects, const std::string& prefix) {
    return [&, prefix](const std::string& dir) -> absl::Status {
      for (const auto& o : objects) {
        const std::string relative = o.key.substr(prefix.size());
        if (relative.empty() || absl::StrContains(relative, "..")) continue;
        SHEARS_RETURN_IF_ERROR(client_
                                   .Download(Url(loc.bucket, o.key), get.headers, (fs::path(dir) / relative).string(),
                                             relative, progress, get.auth)
                                   .status());
      }
      return absl::OkStatus();
    };
  };
  // An object of that name is a file; otherwise the name is a prefix (a model directory).
  auto head = client_.Send(Request("HEAD", Url(loc.bucket, loc.key), kEmptySha256));
  if (head.ok() && !loc.key.empty()) {
    const std::string name = loc.key.substr(loc.key.rfind('/') + 1);
    const std::string prefix = loc.key.substr(0, loc.key.size() - name.size());
    SHEARS_ASSIGN_OR_RETURN(std::string dir,
                            cache_.Get(absl::StrCat(uri, " ", head->etag), fetch_into({{loc.key, head->etag, 0}}, prefix)));
    return (fs::path(dir) / name).string();
  }
  if (!head.ok() && !absl::IsNotFound(head.status())) return head.status();
  const std::string prefix = loc.key.empty() || loc.key.back() == '/' ? loc.key : loc.key + "/";
  SHEARS_ASSIGN_OR_RETURN(std::vector<Object> objects, ListObjects(loc.bucket, prefix));
  if (objects.empty()) return absl::NotFoundError(absl::StrCat(uri, ": no such object, and no object under it"));
  std::string key = uri;
  for (const auto& o : objects) absl::StrAppend(&key, " ", o.key, "=", o.etag);
  return cache_.Get(key, fetch_into(objects, prefix));
}

absl::Status S3FileSystem::Put(const std::string& local_path, const std::string& uri) {
  SHEARS_ASSIGN_OR_RETURN(Location loc, Parse(uri));
  std::error_code ec;
  const auto size = static_cast<int64_t>(fs::file_size(local_path, ec));
  if (ec) return absl::InternalError(absl::StrCat("cannot read ", local_path, ": ", ec.message()));
  if (size > part_bytes_) return PutMultipart(local_path, loc.bucket, loc.key, size);
  SHEARS_ASSIGN_OR_RETURN(std::string sha, Sha256File(local_path, 0, size));
  HttpRequest put = Request("PUT", Url(loc.bucket, loc.key), sha);
  put.body_file = local_path;
  put.body_size = size;
  return client_.Send(put).status();
}

absl::Status S3FileSystem::PutMultipart(const std::string& local_path, const std::string& bucket,
                                        const std::string& key, int64_t size) const {
  SHEARS_ASSIGN_OR_RETURN(HttpResponse init, client_.Send(Request("POST", Url(bucket, key, "uploads="), kEmptySha256)));
  const std::string upload_id = XmlValue(init.body, "UploadId");
  if (upload_id.empty()) return absl::DataLossError(absl::StrCat("s3://", bucket, "/", key, ": no UploadId in ", init.body));
  const std::string id_query = "uploadId=" + Encode(upload_id, false);
  const int parts = static_cast<int>((size + part_bytes_ - 1) / part_bytes_);
  std::vector<std::string> etags(parts);
  std::atomic<int> next{0};
  std::mutex mu;
  absl::Status failure;
  auto upload = [&] {
    for (int i; (i = next++) < parts;) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!failure.ok()) return;
      }
      const int64_t offset = int64_t{i} * part_bytes_, length = std::min(part_bytes_, size - offset);
      auto sent = [&]() -> absl::StatusOr<HttpResponse> {
        SHEARS_ASSIGN_OR_RETURN(std::string sha, Sha256File(local_path, offset, length));
        HttpRequest put = Request("PUT", Url(bucket, key, absl::StrCat("partNumber=", i + 1, "&", id_query)), sha);
        put.body_file = local_path;
        put.body_offset = offset;
        put.body_size = length;
        return client_.Send(put);
      }();
      std::lock_guard<std::mutex> lock(mu);
      if (sent.ok()) {
        etags[i] = sent->etag;
      } else if (failure.ok()) {
        failure = sent.status();
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < std::min(kUploadThreads, parts); ++t) threads.emplace_back(upload);
  for (auto& t : threads) t.join();
  if (failure.ok()) {
    std::string xml = "<CompleteMultipartUpload>";
    for (int i = 0; i < parts; ++i) {
      absl::StrAppend(&xml, "<Part><PartNumber>", i + 1, "</PartNumber><ETag>", etags[i], "</ETag></Part>");
    }
    xml += "</CompleteMultipartUpload>";
    HttpRequest complete = Request("POST", Url(bucket, key, id_query), Sha256Hex(xml));
    complete.body = xml;
    auto done = client_.Send(complete);
    // S3 may answer 200 and still report an error in the body.
    if (done.ok() && absl::StrContains(done->body, "<Error>")) {
      done = absl::InternalError(absl::StrCat("complete s3://", bucket, "/", key, ": ", done->body.substr(0, 300)));
    }
    if (done.ok()) return absl::OkStatus();
    failure = done.status();
  }
  // Parts left behind would be billed and never used.
  client_.Send(Request("DELETE", Url(bucket, key, id_query), kEmptySha256)).status().IgnoreError();
  return failure;
}

absl::Status S3FileSystem::Delete(const std::string& uri) {
  SHEARS_ASSIGN_OR_RETURN(Location loc, Parse(uri));
  auto deleted = client_.Send(Request("DELETE", Url(loc.bucket, loc.key), kEmptySha256));
  if (!deleted.ok() && !absl::IsNotFound(deleted.status())) return deleted.status();
  return absl::OkStatus();
}

}  // namespace shears::worker
