#include "worker/storage/tenant_credentials.h"

#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace shears::worker {

absl::StatusOr<TenantCredentials> ParseTenantCredentials(const std::string& text) {
  const auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("tenants") || !json["tenants"].is_object()) {
    return absl::InvalidArgumentError("expected {\"tenants\": {\"<tenant>\": {...}}}");
  }
  TenantCredentials out;
  for (const auto& [tenant, entry] : json["tenants"].items()) {
    if (!entry.is_object()) return absl::InvalidArgumentError(absl::StrCat("tenants.", tenant, ": not an object"));
    StorageCredentials c;
    for (const auto& [field, into] :
         {std::pair{"aws_access_key_id", &c.aws_access_key_id}, std::pair{"aws_secret_access_key", &c.aws_secret_access_key},
          std::pair{"aws_session_token", &c.aws_session_token}, std::pair{"aws_region", &c.aws_region},
          std::pair{"aws_endpoint_url", &c.aws_endpoint_url}, std::pair{"hf_token", &c.hf_token}}) {
      if (!entry.contains(field)) continue;
      if (!entry[field].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat("tenants.", tenant, ".", field, ": not a string"));
      }
      *into = entry[field].get<std::string>();
    }
    for (const auto& [field, value] : entry.items()) {
      static const std::set<std::string> kKnown = {"aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                                                   "aws_region",        "aws_endpoint_url",      "hf_token"};
      if (kKnown.count(field) == 0) {
        return absl::InvalidArgumentError(absl::StrCat("tenants.", tenant, ".", field, ": unknown field"));
      }
    }
    out[tenant] = std::move(c);
  }
  return out;
}

absl::StatusOr<TenantCredentials> LoadTenantCredentials(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--tenant-credentials ", path, ": ", text.status().message()));
  }
  auto parsed = ParseTenantCredentials(*text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--tenant-credentials ", path, ": ", parsed.status().message()));
  }
  return parsed;
}

}  // namespace shears::worker
