#include "worker/storage/http_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
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
#include "common/status_macros.h"

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
  const UrlGuard* guard = nullptr;
  bool redirecting = false;  // the response whose headers arrive is a 3xx
  std::string refused;       // why the guard stopped the transfer; empty: it did not
  int64_t max_bytes = 0;  // of the whole file; 0: none
  bool too_big = false;   // the body passed max_bytes: the transfer stopped
  std::string part;  // the file `out` writes
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
  const int64_t whole = a->offset + std::max(a->received + static_cast<int64_t>(n), a->content_length);
  if (a->max_bytes > 0 && whole > a->max_bytes) {
    a->too_big = true;
    return 0;  // makes curl stop with a write error
  }
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
    if (!absl::StartsWith(line, "HTTP/")) return n;
    a->content_length = -1;  // a new response (after a redirect)
    a->etag.clear();
    const size_t space = line.find(' ');
    a->redirecting = space != absl::string_view::npos && absl::StartsWith(line.substr(space + 1), "3");
    if (a->out != nullptr && a->offset > 0 && space != absl::string_view::npos &&
        absl::StartsWith(line.substr(space + 1), "200")) {
      // The server ignored the range and sends the whole file: start the file and digest over.
      a->out->close();
      a->out->open(a->part, std::ios::binary | std::ios::trunc);
      *a->digest = Sha256();
      a->offset = 0;
    }
    return n;
  }
  const std::string key = absl::AsciiStrToLower(line.substr(0, colon));
  absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
  if (key == "content-length") {
    int64_t length = 0;
    if (absl::SimpleAtoi(value, &length)) a->content_length = length;
  } else if (key == "etag") {
    a->etag = std::string(absl::StripSuffix(absl::StripPrefix(absl::StripPrefix(value, "W/"), "\""), "\""));
  } else if (key == "location" && a->redirecting && a->guard != nullptr && a->guard->allowed) {
    // Where the redirect leads, resolved against the URL that answered it.
    char* current = nullptr;
    curl_easy_getinfo(a->curl, CURLINFO_EFFECTIVE_URL, &current);
    std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> url(curl_url(), curl_url_cleanup);
    char* target = nullptr;
    const std::string location(value);
    if (current == nullptr || curl_url_set(url.get(), CURLUPART_URL, current, 0) != CURLUE_OK ||
        curl_url_set(url.get(), CURLUPART_URL, location.c_str(), 0) != CURLUE_OK ||
        curl_url_get(url.get(), CURLUPART_URL, &target, 0) != CURLUE_OK) {
      a->refused = absl::StrCat("a redirect to '", location, "' that cannot be read");
      return 0;
    }
    const std::string resolved(target);
    curl_free(target);
    if (!a->guard->allowed(resolved)) {
      a->refused = absl::StrCat("a redirect to ", resolved, ", outside the URI policy");
      return 0;  // curl stops the transfer
    }
  }
  return n;
}

// Whether `address` is loopback, private or link-local (or unspecified).
bool IsPrivate(const sockaddr* address) {
  if (address->sa_family == AF_INET) {
    const uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(address)->sin_addr.s_addr);
    const auto in = [ip](uint32_t net, int bits) { return (ip >> (32 - bits)) == (net >> (32 - bits)); };
    return in(0x7f000000, 8) || in(0x0a000000, 8) || in(0xac100000, 12) || in(0xc0a80000, 16) ||
           in(0xa9fe0000, 16) || in(0x00000000, 8) || in(0x64400000, 10);  // 100.64/10: carrier-grade NAT
  }
  if (address->sa_family == AF_INET6) {
    const in6_addr& ip = reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&ip)) {
      sockaddr_in v4{};
      v4.sin_family = AF_INET;
      std::memcpy(&v4.sin_addr, ip.s6_addr + 12, 4);
      return IsPrivate(reinterpret_cast<const sockaddr*>(&v4));
    }
    return IN6_IS_ADDR_LOOPBACK(&ip) || IN6_IS_ADDR_UNSPECIFIED(&ip) || IN6_IS_ADDR_LINKLOCAL(&ip) ||
           (ip.s6_addr[0] & 0xfe) == 0xfc;  // fc00::/7, unique local
  }
  return true;  // anything else is no public Internet address
}

// Opens each connection's socket, unless the guard refuses its address: the check is on the
// address curl is about to connect to, so a name that resolves differently later (DNS
// rebinding) is caught as well.
curl_socket_t OnOpenSocket(void* user, curlsocktype, curl_sockaddr* address) {
  auto* a = static_cast<Attempt*>(user);
  if (a->guard != nullptr && !a->guard->private_networks && IsPrivate(&address->addr)) {
    char host[INET6_ADDRSTRLEN] = "?";
    const void* ip = address->family == AF_INET6
                         ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(&address->addr)->sin6_addr)
                         : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(&address->addr)->sin_addr);
    inet_ntop(address->family, ip, host, sizeof host);
    a->refused = absl::StrCat("a connection to ", host, ", a loopback, private or link-local address, which the URI "
                              "policy does not allow (private_networks)");
    return CURL_SOCKET_BAD;
  }
  return socket(address->family, address->socktype, address->protocol);
}

// Puts `a` (and the client's guard) in the way of every connection and redirect of `c`.
void Guard(CURL* c, Attempt& a, const UrlGuard& guard) {
  a.curl = c;
  a.guard = &guard;
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, OnOpenSocket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &a);
  // Redirects stay on HTTP(S), however many the guard allows.
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
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

absl::Status HttpError(const std::string& method, const std::string& url, long status,
                       const std::string& body = "") {
  std::string message = absl::StrCat(method, " ", url, ": HTTP ", status);
  if (!body.empty()) absl::StrAppend(&message, ": ", body.substr(0, 300));
  if (status == 404) return absl::NotFoundError(message);
  if (status == 401 || status == 403) return absl::PermissionDeniedError(message);
  return absl::FailedPreconditionError(message);
}

// Sleeps before retry `attempt` (1, 2, ...): exponential from the initial backoff, capped, ±50%.
void Backoff(const RetryPolicy& retry, int attempt, std::mt19937_64& rng) {
  const absl::Duration backoff = std::min(retry.max_backoff, retry.initial_backoff * (1 << (attempt - 1)));
  std::this_thread::sleep_for(absl::ToChronoMilliseconds(backoff * std::uniform_real_distribution<>(0.5, 1.5)(rng)));
}

// What every request sets: the target, the headers, no signals (threads), and a stall that
// counts as a broken connection.
void CommonOptions(CURL* c, const std::string& url, curl_slist* headers) {
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
}

void SetAuth(CURL* c, const HttpAuth& auth) {
  if (auth.aws_sigv4.empty()) return;
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, auth.aws_sigv4.c_str());
  curl_easy_setopt(c, CURLOPT_USERPWD, auth.userpwd.c_str());
}

// The request body as libcurl reads it: from memory or from a file range.
struct Body {
  const std::string* text = nullptr;
  std::ifstream* file = nullptr;
  int64_t left = 0;
  size_t at = 0;
};

size_t ReadBody(char* buffer, size_t size, size_t count, void* user) {
  auto* b = static_cast<Body*>(user);
  const size_t n = static_cast<size_t>(std::min<int64_t>(b->left, static_cast<int64_t>(size * count)));
  if (b->text != nullptr) {
    std::memcpy(buffer, b->text->data() + b->at, n);
  } else if (!b->file->read(buffer, static_cast<std::streamsize>(n))) {
    return CURL_READFUNC_ABORT;
  }
  b->at += n;
  b->left -= static_cast<int64_t>(n);
  return n;
}

size_t AppendBody(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

}  // namespace

HttpClient::HttpClient(RetryPolicy retry, TransferCounters counters, UrlGuard guard, int64_t max_download_bytes)
    : retry_(retry), counters_(std::move(counters)), guard_(std::move(guard)), max_download_bytes_(max_download_bytes) {
  GlobalInit();
}

void HttpClient::Count(void* curl) const {
  curl_off_t down = 0, up = 0;
  curl_easy_getinfo(static_cast<CURL*>(curl), CURLINFO_SIZE_DOWNLOAD_T, &down);
  curl_easy_getinfo(static_cast<CURL*>(curl), CURLINFO_SIZE_UPLOAD_T, &up);
  if (down > 0 && counters_.downloaded) counters_.downloaded(down);
  if (up > 0 && counters_.uploaded) counters_.uploaded(up);
}

absl::StatusOr<Downloaded> HttpClient::Download(const std::string& url, const std::vector<std::string>& headers,
                                                const std::string& path, const std::string& name,
                                                const ProgressFn& progress, const HttpAuth& auth) const {
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
    if (attempt > 0) Backoff(retry_, attempt, rng);
    std::ofstream out(part, std::ios::binary | std::ios::app);
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", part));
    Attempt a;
    a.part = part;
    a.out = &out;
    a.digest = &digest;
    a.progress = &progress;
    a.name = name;
    a.offset = have;
    a.max_bytes = max_download_bytes_;
    a.start = a.last_report = std::chrono::steady_clock::now();
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    curl_slist* list = nullptr;
    for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(list, curl_slist_free_all);
    CURL* c = curl.get();
    Guard(c, a, guard_);
    CommonOptions(c, url, list);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnTransfer);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &a);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    const std::string range = absl::StrCat(have, "-");
    if (have > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
    SetAuth(c, auth);
    const CURLcode code = curl_easy_perform(c);
    Count(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    out.close();
    if (!a.refused.empty()) {
      fs::remove(part, ec);
      return absl::PermissionDeniedError(absl::StrCat("GET ", url, ": refused ", a.refused));
    }
    if (a.too_big) {
      fs::remove(part, ec);
      return absl::ResourceExhaustedError(absl::StrCat("GET ", url, ": ", name, " is larger than the worker's limit of ",
                                                       max_download_bytes_, " bytes a file (--max-download-bytes)"));
    }
    have = a.offset + a.received;
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
      return HttpError("GET", url, status);
    }
    last_error = code != CURLE_OK ? std::string(curl_easy_strerror(code))
                                  : absl::StrCat("HTTP ", status, " after ", a.received, " bytes");
  }
  fs::remove(part, ec);
  return absl::UnavailableError(absl::StrCat("GET ", url, ": failed after ", retry_.attempts, " attempts (last: ",
                                             last_error, ")"));
}

absl::StatusOr<HttpResponse> HttpClient::Send(const HttpRequest& request) const {
  std::mt19937_64 rng(std::random_device{}());
  std::string last_error;
  for (int attempt = 0; attempt < retry_.attempts; ++attempt) {
    if (attempt > 0) Backoff(retry_, attempt, rng);
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    CURL* c = curl.get();
    curl_slist* list = curl_slist_append(nullptr, "Expect:");  // no 100-continue round trip
    for (const auto& h : request.headers) list = curl_slist_append(list, h.c_str());
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(list, curl_slist_free_all);
    Attempt a;  // for the ETag header only
    HttpResponse response;
    std::ifstream file;
    Body body;
    if (!request.body_file.empty()) {
      file.open(request.body_file, std::ios::binary);
      if (!file) return absl::InternalError(absl::StrCat("cannot read ", request.body_file));
      file.seekg(request.body_offset);
      body.file = &file;
      body.left = request.body_size;
    } else {
      body.text = &request.body;
      body.left = static_cast<int64_t>(request.body.size());
    }
    Guard(c, a, guard_);
    CommonOptions(c, request.url, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, AppendBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &response.body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
    if (request.method == "PUT" || request.method == "POST") {
      curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadBody);
      curl_easy_setopt(c, CURLOPT_READDATA, &body);
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body.left));
    }
    if (request.method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (request.method != "GET" && request.method != "PUT") {
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
    SetAuth(c, request.auth);
    const CURLcode code = curl_easy_perform(c);
    Count(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
    if (!a.refused.empty()) {
      return absl::PermissionDeniedError(absl::StrCat(request.method, " ", request.url, ": refused ", a.refused));
    }
    if (code == CURLE_OK && response.status >= 200 && response.status < 300) {
      response.etag = a.etag.empty() ? "" : absl::StrCat("\"", a.etag, "\"");
      response.content_length = a.content_length;
      return response;
    }
    if (code == CURLE_OK && !Retryable(code, response.status)) {
      return HttpError(request.method, request.url, response.status, response.body);
    }
    last_error = code != CURLE_OK ? std::string(curl_easy_strerror(code)) : absl::StrCat("HTTP ", response.status);
  }
  return absl::UnavailableError(absl::StrCat(request.method, " ", request.url, ": failed after ", retry_.attempts,
                                             " attempts (last: ", last_error, ")"));
}

absl::StatusOr<std::string> HttpClient::ReadRange(HttpRequest request, int64_t offset, int64_t length) const {
  if (length <= 0) return std::string();
  request.headers.push_back(absl::StrCat("Range: bytes=", offset, "-", offset + length - 1));
  SHEARS_ASSIGN_OR_RETURN(HttpResponse r, Send(request));
  // A server that ignores ranges sends the whole file.
  if (r.status == 200) return r.body.substr(std::min<size_t>(offset, r.body.size()), length);
  return std::move(r.body);
}

}  // namespace shears::worker
