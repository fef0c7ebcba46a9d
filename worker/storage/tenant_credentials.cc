#include "worker/storage/tenant_credentials.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace shears::worker {
namespace {

// The fields of a tenant's entry, and where each goes.
constexpr std::pair<const char*, std::string StorageCredentials::*> kFields[] = {
    {"aws_access_key_id", &StorageCredentials::aws_access_key_id},
    {"aws_secret_access_key", &StorageCredentials::aws_secret_access_key},
    {"aws_session_token", &StorageCredentials::aws_session_token},
    {"aws_region", &StorageCredentials::aws_region},
    {"aws_endpoint_url", &StorageCredentials::aws_endpoint_url},
    {"hf_token", &StorageCredentials::hf_token}};

}  // namespace

absl::StatusOr<TenantCredentials> ParseTenantCredentials(const std::string& text) {
  const auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("tenants") || !json["tenants"].is_object()) {
    return absl::InvalidArgumentError("expected {\"tenants\": {\"<tenant>\": {...}}}");
  }
  TenantCredentials out;
  for (const auto& [tenant, entry] : json["tenants"].items()) {
    if (!entry.is_object()) return absl::InvalidArgumentError(absl::StrCat("tenants.", tenant, ": not an object"));
    StorageCredentials c;
    for (const auto& [field, value] : entry.items()) {
      const auto* known = std::find_if(std::begin(kFields), std::end(kFields),
                                       [&field = field](const auto& f) { return field == f.first; });
      if (known == std::end(kFields)) {
        return absl::InvalidArgumentError(absl::StrCat("tenants.", tenant, ".", field, ": unknown field"));
      }
      if (!value.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat("tenants.", tenant, ".", field, ": not a string"));
      }
      c.*(known->second) = value.get<std::string>();
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
