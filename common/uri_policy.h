#pragma once
// Which URIs a tenant's jobs may name, checked by the server at CreateJob and again by the worker
// before a byte moves (--uri-policy FILE on both, the same file):
//
//   {"tenants": {
//      "team-a": {"allow": ["file:///data/team-a", "s3://team-a-models", "hf://meta-llama",
//                           "https://datasets.example.com/team-a"],
//                 "private_networks": false},
//      "*": {"allow": ["hf://"]}}}
//
// `allow` lists URI prefixes, compared canonically by whole path components (common/uri.h):
// "s3://team-a-models" allows s3://team-a-models/llama but not s3://team-a-models-2/x. "*" is the
// policy of a tenant the file does not name; without it such a tenant may name no URI.
// `private_networks` (default false) lets http(s) URIs reach loopback, private and link-local
// addresses, which are otherwise refused at connection time, redirects included.

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace shears {

struct TenantUriPolicy {
  std::string tenant;
  std::vector<std::string> allow;  // canonical
  bool private_networks = false;

  bool Allows(const std::string& uri) const;
  // The paths of the file:// prefixes: the roots a job's local files must resolve into.
  std::vector<std::string> FileRoots() const;
};

class UriPolicy {
 public:
  static absl::StatusOr<UriPolicy> Parse(const std::string& json);
  static absl::StatusOr<UriPolicy> Load(const std::string& path);
  // The tenant's policy (or "*"'s); PERMISSION_DENIED when there is neither.
  absl::StatusOr<TenantUriPolicy> For(const std::string& tenant) const;

 private:
  std::map<std::string, TenantUriPolicy> tenants_;
};

}  // namespace shears
