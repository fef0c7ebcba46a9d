#pragma once
// URIs of models, datasets and outputs: file:// (local paths, confined to the roots an operator
// allows), s3://bucket/key (read and written), http:// and https:// (read), hf://org/name[@revision]
// (a Hub-style model repository, read). Other schemes are recognised so that errors can say what
// is missing.

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace shears {

struct Uri {
  std::string scheme;  // "file", "s3", ...
  std::string rest;    // everything after "scheme://"
};

// Accepts "scheme://rest"; a bare absolute path is taken as file://.
absl::StatusOr<Uri> ParseUri(const std::string& text);
bool IsSupportedScheme(const std::string& scheme);
// Schemes that can be read but not written (outputs cannot go there).
bool IsReadOnlyScheme(const std::string& scheme);
// The schemes served, for messages: "file, http, https, hf".
std::string SupportedSchemes();
// The local path of a file:// URI (or a bare absolute path).
absl::StatusOr<std::string> LocalPath(const std::string& uri);

// The URI in one spelling: a bare path as file://, and `.`, `..`, repeated and trailing slashes of
// its path gone ("file:///m/./a/../" -> "file:///m"). The text as it was when it does not parse.
std::string CanonicalUri(const std::string& uri);
// Whether two URIs name the same place or one lies inside the other, compared canonically by whole
// path components: file:///m overlaps file:///m/out but not file:///model.
bool UrisOverlap(const std::string& a, const std::string& b);

// PERMISSION_DENIED unless the file:// URI's path, with `..` and symbolic links resolved, lies
// within one of `roots`. No roots: every local path is allowed. Other schemes pass.
absl::Status CheckFileRoots(const std::string& uri, const std::vector<std::string>& roots);

}  // namespace shears
