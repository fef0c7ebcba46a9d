#pragma once
// URIs of models, datasets and outputs. Only file:// is served for now; other schemes are
// recognised so that errors can say what is missing.

#include <string>

#include "absl/status/statusor.h"

namespace shears {

struct Uri {
  std::string scheme;  // "file", "s3", ...
  std::string rest;    // everything after "scheme://"
};

// Accepts "scheme://rest"; a bare absolute path is taken as file://.
absl::StatusOr<Uri> ParseUri(const std::string& text);
bool IsSupportedScheme(const std::string& scheme);
// The local path of a file:// URI (or a bare absolute path).
absl::StatusOr<std::string> LocalPath(const std::string& uri);

}  // namespace shears
