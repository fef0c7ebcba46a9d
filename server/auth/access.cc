#include "server/auth/access.h"

#include "absl/strings/str_cat.h"

namespace shears::server {

absl::Status CheckRole(const Authenticator& authenticator, const Identity& caller, Api api) {
  // An open server's one identity is the operator at the console: it runs the demo's worker too.
  if (authenticator.open()) return absl::OkStatus();
  const bool allowed = api == Api::kWorkers ? caller.role == Role::kWorker : caller.role != Role::kWorker;
  if (allowed) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(caller.principal, " (role ", RoleName(caller.role),
                                                  ") may not call the ", api == Api::kWorkers ? "Workers" : "Pruning",
                                                  " API"));
}

absl::StatusOr<Identity> Authorize(const Authenticator& authenticator, const grpc::ServerContextBase& context, Api api) {
  auto caller = authenticator.Authenticate(context);
  if (!caller.ok()) return caller.status();
  if (absl::Status st = CheckRole(authenticator, *caller, api); !st.ok()) return st;
  return caller;
}

std::string TenantOf(const Identity& caller) { return caller.tenant.empty() ? kDefaultTenant : caller.tenant; }

std::string TenantScope(const Identity& caller) { return caller.role == Role::kAdmin ? "" : TenantOf(caller); }

bool CanSee(const Identity& caller, const v1::Job& job) {
  const std::string scope = TenantScope(caller);
  return scope.empty() || job.tenant() == scope;
}

}  // namespace shears::server
