#pragma once
// What each role may call, and which jobs it sees.

#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "server/auth/authenticator.h"
#include "shears/v1/job.pb.h"

namespace shears::server {

enum class Api {
  kPruning,  // shears.v1.Pruning: clients and admins
  kWorkers,  // shears.v1.Workers: workers alone
};

// PERMISSION_DENIED when `caller`'s role may not call `api`.
absl::Status CheckRole(const Authenticator& authenticator, const Identity& caller, Api api);
// The caller, if it may call `api`: UNAUTHENTICATED without credentials this server knows,
// PERMISSION_DENIED for a role that may not.
absl::StatusOr<Identity> Authorize(const Authenticator& authenticator, const grpc::ServerContextBase& context, Api api);

// The tenant a caller's new jobs belong to.
std::string TenantOf(const Identity& caller);
// The tenant whose jobs `caller` sees; empty for an admin, who sees every tenant's.
std::string TenantScope(const Identity& caller);
// Whether `caller` sees `job`. A job it may not see is NOT_FOUND to it, never PERMISSION_DENIED,
// so that ids of other tenants' jobs cannot be probed.
bool CanSee(const Identity& caller, const v1::Job& job);

}  // namespace shears::server
