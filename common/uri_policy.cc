#include "common/uri_policy.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/uri.h"

namespace shears {

bool TenantUriPolicy::Allows(const std::string& uri) const {
  const std::string canonical = CanonicalUri(uri);
  for (const auto& prefix : allow) {
    // Inside `prefix`: UrisOverlap in one direction only.
    if (UrisOverlap(prefix, canonical) && canonical.size() >= prefix.size()) return true;
  }
  return false;
}

std::vector<std::string> TenantUriPolicy::FileRoots() const {
  std::vector<std::string> roots;
  for (const auto& prefix : allow) {
    if (auto path = LocalPath(prefix); path.ok()) roots.push_back(*path);
  }
  return roots;
}

absl::StatusOr<UriPolicy> UriPolicy::Parse(const std::string& text) {
  const auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("tenants") || !json["tenants"].is_object()) {
    return absl::InvalidArgumentError("expected {\"tenants\": {\"<tenant>\": {\"allow\": [...]}}}");
  }
  UriPolicy policy;
  for (const auto& [tenant, entry] : json["tenants"].items()) {
    const std::string where = absl::StrCat("tenants.", tenant);
    if (!entry.is_object() || !entry.contains("allow") || !entry["allow"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".allow: a list of URI prefixes is required"));
    }
    TenantUriPolicy& p = policy.tenants_[tenant];
    p.tenant = tenant;
    for (const auto& prefix : entry["allow"]) {
      if (!prefix.is_string()) return absl::InvalidArgumentError(absl::StrCat(where, ".allow: entries are strings"));
      auto parsed = ParseUri(prefix.get<std::string>());
      if (!parsed.ok() || !IsSupportedScheme(parsed->scheme)) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".allow: '", prefix.get<std::string>(),
                                                       "' is not a URI of a supported scheme (", SupportedSchemes(), ")"));
      }
      p.allow.push_back(CanonicalUri(prefix.get<std::string>()));
    }
    if (entry.contains("private_networks")) {
      if (!entry["private_networks"].is_boolean()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".private_networks: true or false"));
      }
      p.private_networks = entry["private_networks"].get<bool>();
    }
  }
  return policy;
}

absl::StatusOr<UriPolicy> UriPolicy::Load(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("--uri-policy ", path, ": ", text.status().message()));
  auto policy = Parse(*text);
  if (!policy.ok()) return absl::InvalidArgumentError(absl::StrCat("--uri-policy ", path, ": ", policy.status().message()));
  return policy;
}

absl::StatusOr<TenantUriPolicy> UriPolicy::For(const std::string& tenant) const {
  if (auto it = tenants_.find(tenant); it != tenants_.end()) return it->second;
  if (auto it = tenants_.find("*"); it != tenants_.end()) {
    TenantUriPolicy p = it->second;
    p.tenant = tenant;
    return p;
  }
  return absl::PermissionDeniedError(absl::StrCat("tenant ", tenant, " has no URI policy: it may name no URI"));
}

}  // namespace shears
