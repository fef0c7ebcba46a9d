#include "server/auth/uri_policies.h"

#include "common/job_spec.h"

namespace shears::server {

absl::StatusOr<std::unique_ptr<UriPolicies>> UriPolicies::Open(std::string path) {
  std::unique_ptr<UriPolicies> policies(new UriPolicies(std::move(path)));
  if (absl::Status st = policies->Reload(); !st.ok()) return st;
  return policies;
}

absl::Status UriPolicies::Reload() {
  if (path_.empty()) return absl::OkStatus();
  auto loaded = UriPolicy::Load(path_);
  if (!loaded.ok()) return loaded.status();
  auto fresh = std::make_shared<const UriPolicy>(std::move(*loaded));
  absl::MutexLock lock(&mu_);
  policy_ = std::move(fresh);
  return absl::OkStatus();
}

absl::Status UriPolicies::Check(const v1::JobSpec& spec, const std::string& tenant) const {
  std::shared_ptr<const UriPolicy> policy;
  {
    absl::MutexLock lock(&mu_);
    policy = policy_;
  }
  if (policy == nullptr) return absl::OkStatus();
  auto tenant_policy = policy->For(tenant);
  if (!tenant_policy.ok()) return tenant_policy.status();
  return CheckUriPolicy(spec, *tenant_policy);
}

}  // namespace shears::server
