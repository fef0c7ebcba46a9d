#include "common/uri.h"

#include "absl/strings/str_cat.h"

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

bool IsSupportedScheme(const std::string& scheme) { return scheme == "file"; }

absl::StatusOr<std::string> LocalPath(const std::string& uri) {
  auto parsed = ParseUri(uri);
  if (!parsed.ok()) return parsed.status();
  if (parsed->scheme != "file") {
    return absl::InvalidArgumentError(
        absl::StrCat("'", uri, "': scheme '", parsed->scheme, "' is not supported (supported: file)"));
  }
  if (parsed->rest.empty() || parsed->rest[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("'", uri, "': file URIs need an absolute path"));
  }
  return parsed->rest;
}

}  // namespace shears
