#include "common/uri.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace shears {

absl::StatusOr<Uri> ParseUri(const std::string& text) {
  if (text.empty()) return absl::InvalidArgumentError("empty URI");
  if (text[0] == '/') return Uri{"file", text};
  auto sep = text.find("://");
  if (sep == std::string::npos || sep == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a URI (expected scheme://..., e.g. file:///models/m)"));
  }
  return Uri{text.substr(0, sep), text.substr(sep + 3)};
}

bool IsSupportedScheme(const std::string& scheme) {
  return scheme == "file" || scheme == "http" || scheme == "https" || scheme == "hf" || scheme == "s3";
}

bool IsReadOnlyScheme(const std::string& scheme) { return scheme == "http" || scheme == "https" || scheme == "hf"; }

std::string SupportedSchemes() { return "file, s3, http, https, hf"; }

absl::StatusOr<std::string> LocalPath(const std::string& uri) {
  auto parsed = ParseUri(uri);
  if (!parsed.ok()) return parsed.status();
  if (parsed->scheme != "file") {
    return absl::InvalidArgumentError(
        absl::StrCat("'", uri, "': not a file:// URI"));
  }
  if (parsed->rest.empty() || parsed->rest[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("'", uri, "': file URIs need an absolute path"));
  }
  return parsed->rest;
}

std::string CanonicalUri(const std::string& uri) {
  auto parsed = ParseUri(uri);
  if (!parsed.ok()) return uri;
  // An s3:// or hf:// "path" starts with its bucket or repository; only file:// paths are rooted.
  const bool rooted = parsed->scheme == "file";
  std::vector<std::string> kept;
  for (absl::string_view part : absl::StrSplit(parsed->rest, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      if (!kept.empty()) kept.pop_back();
      continue;
    }
    kept.emplace_back(part);
  }
  return absl::StrCat(parsed->scheme, "://", rooted ? "/" : "", absl::StrJoin(kept, "/"));
}

bool UrisOverlap(const std::string& a, const std::string& b) {
  const std::string x = CanonicalUri(a), y = CanonicalUri(b);
  const auto inside = [](const std::string& outer, const std::string& inner) {
    if (inner.size() < outer.size() || inner.compare(0, outer.size(), outer) != 0) return false;
    return inner.size() == outer.size() || outer.back() == '/' || inner[outer.size()] == '/';
  };
  return inside(x, y) || inside(y, x);
}

absl::Status CheckFileRoots(const std::string& uri, const std::vector<std::string>& roots) {
  auto parsed = ParseUri(uri);
  if (!parsed.ok() || parsed->scheme != "file" || roots.empty()) return absl::OkStatus();
  namespace fs = std::filesystem;
  std::error_code ec;
  // weakly_canonical resolves the symbolic links of the part that exists and `..` everywhere.
  const fs::path path = fs::weakly_canonical(fs::path(parsed->rest), ec);
  for (const auto& root : roots) {
    const fs::path base = fs::weakly_canonical(fs::path(root), ec);
    auto [end, at] = std::mismatch(base.begin(), base.end(), path.begin(), path.end());
    if (end == base.end() || (std::next(end) == base.end() && end->empty())) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat("'", uri, "' is outside the allowed file roots (", absl::StrJoin(roots, ", "), ")"));
}

}  // namespace shears
