#include "common/uri.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

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
