#pragma once
// --tenant-credentials FILE: each tenant's storage keys, so that a job reaches only what its own
// team's keys reach (mount it from a Secret):
//
//   {"tenants": {"team-a": {"aws_access_key_id": "...", "aws_secret_access_key": "...",
//                           "aws_session_token": "", "aws_region": "eu-west-1",
//                           "aws_endpoint_url": "https://minio.team-a:9000", "hf_token": "hf_..."}}}
//
// With the file, a tenant it does not name runs anonymously: the worker's own environment keys are
// never used for a tenant's job.

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "worker/storage/filesystem.h"

namespace shears::worker {

using TenantCredentials = std::map<std::string, StorageCredentials>;

absl::StatusOr<TenantCredentials> ParseTenantCredentials(const std::string& json);
absl::StatusOr<TenantCredentials> LoadTenantCredentials(const std::string& path);

}  // namespace shears::worker
