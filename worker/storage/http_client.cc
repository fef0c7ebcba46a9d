#include "worker/storage/http_client.h"

#include <curl/curl.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/sha256.h"

namespace shears::worker {
namespace fs = std::filesystem;
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// One attempt's state, filled by libcurl's callbacks.
struct Attempt {
  CURL* curl = nullptr;
  std::ofstream* out = nullptr;
  Sha256* digest = nullptr;
  int64_t received = 0;  // body bytes of this attempt
  int64_t content_length = -1;
  std::string etag;
  // Progress.
  const ProgressFn* progress = nullptr;
  std::string name;
  int64_t offset = 0;
  std::chrono::steady_clock::time_point start, last_report;
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* a = static_cast<Attempt*>(user);
  const size_t n = size * count;
  long status = 0;
  curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 300) return n;  // an error page, not the file
  a->out->write(data, static_cast<std::streamsize>(n));
  if (!*a->out) return 0;  // makes curl fail with a write error
  a->digest->Update(data, n);
  a->received += static_cast<int64_t>(n);
  return n;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* a = static_cast<Attempt*>(user);
  const size_t n = size * count;
  absl::string_view line(data, n);
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos) {
    if (absl::StartsWith(line, "HTTP/")) a->content_length = -1, a->etag.clear();  // a new response (redirects)
    return n;
  }
  const std::string key = absl::AsciiStrToLower(line.substr(0, colon));
  absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
  if (key == "content-length") {
    int64_t length = 0;
    if (absl::SimpleAtoi(value, &length)) a->content_length = length;
  } else if (key == "etag") {
    a->etag = std::string(absl::StripSuffix(absl::StripPrefix(absl::StripPrefix(value, "W/"), "\""), "\""));
  }
  return n;
}

int OnTransfer(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* a = static_cast<Attempt*>(user);
  const auto now = std::chrono::steady_clock::now();
  if (a->progress == nullptr || !*a->progress || now - a->last_report < std::chrono::milliseconds(500)) return 0;
  a->last_report = now;
  const double seconds = std::chrono::duration<double>(now - a->start).count();
  const int64_t total = a->content_length >= 0 ? a->offset + a->content_length : 0;
  (*a->progress)({a->name, a->offset + a->received, total, seconds > 0 ? double(a->received) / seconds : 0.0});
  return 0;
}

bool Retryable(CURLcode code, long status) {
  if (code != CURLE_OK) return code != CURLE_WRITE_ERROR && code != CURLE_URL_MALFORMAT &&
                               code != CURLE_UNSUPPORTED_PROTOCOL;
  return status >= 500 || status == 429;
}

absl::Status HttpError(const std::string& url, long status) {
  const std::string message = absl::StrCat("GET ", url, ": HTTP ", status);
  if (status == 404) return absl::NotFoundError(message);
  if (status == 401 || status == 403) return absl::PermissionDeniedError(message);
  return absl::FailedPreconditionError(message);
}

}  // namespace

HttpClient::HttpClient(RetryPolicy retry) : retry_(retry) { GlobalInit(); }

absl::StatusOr<Downloaded> HttpClient::Download(const std::string& url, const std::vector<std::string>& headers,
                                                const std::string& path, const std::string& name,
                                                const ProgressFn& progress) const {
  const std::string part = path + ".part";
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  fs::remove(part, ec);  // a part file of unknown origin is not trusted
  Sha256 digest;
  int64_t have = 0;
  std::string etag;
  std::mt19937_64 rng(std::random_device{}());
  std::string last_error;
  for (int attempt = 0; attempt < retry_.attempts; ++attempt) {
    if (attempt > 0) {
      const absl::Duration backoff = std::min(retry_.max_backoff, retry_.initial_backoff * (1 << (attempt - 1)));
      const double jitter = std::uniform_real_distribution<>(0.5, 1.5)(rng);
      std::this_thread::sleep_for(absl::ToChronoMilliseconds(backoff * jitter));
    }
    std::ofstream out(part, std::ios::binary | std::ios::app);
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", part));
    Attempt a;
    a.out = &out;
    a.digest = &digest;
    a.progress = &progress;
    a.name = name;
    a.offset = have;
    a.start = a.last_report = std::chrono::steady_clock::now();
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    curl_slist* list = nullptr;
    for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(list, curl_slist_free_all);
    CURL* c = curl.get();
    a.curl = c;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    // A stalled transfer counts as a broken one.
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnTransfer);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &a);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    const std::string range = absl::StrCat(have, "-");
    if (have > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
    const CURLcode code = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    out.close();
    if (code == CURLE_OK && have > 0 && status == 200) {
      // The server ignored the range and sent the whole file: start the digest over from it.
      fs::path whole = part + ".whole";
      std::ifstream in(part, std::ios::binary);
      in.seekg(have);
      std::ofstream(whole, std::ios::binary) << in.rdbuf();
      fs::rename(whole, part, ec);
      digest = Sha256();
      std::ifstream again(part, std::ios::binary);
      char buf[1 << 16];
      while (again) {
        again.read(buf, sizeof buf);
        digest.Update(buf, static_cast<size_t>(again.gcount()));
      }
      have = 0;
    }
    have += a.received;
    if (!a.etag.empty()) etag = a.etag;
    const bool complete = code == CURLE_OK && (status == 200 || status == 206) &&
                          (a.content_length < 0 || a.received == a.content_length);
    if (complete) {
      fs::rename(part, path, ec);
      if (ec) return absl::InternalError(absl::StrCat("rename ", part, ": ", ec.message()));
      if (progress) progress({name, have, have, 0.0});
      return Downloaded{have, digest.Hex(), etag};
    }
    if (code == CURLE_OK && status >= 400 && !Retryable(code, status)) {
      fs::remove(part, ec);
      return HttpError(url, status);
    }
    last_error = code != CURLE_OK ? std::string(curl_easy_strerror(code))
                                  : absl::StrCat("HTTP ", status, " after ", a.received, " bytes");
  }
  fs::remove(part, ec);
  return absl::UnavailableError(absl::StrCat("GET ", url, ": failed after ", retry_.attempts, " attempts (last: ",
                                             last_error, ")"));
}

}  // namespace shears::worker
