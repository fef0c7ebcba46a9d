#pragma once
// Unary callback handlers whose work is quick: do it inline and finish at once.

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/rpc_status.h"
#include "server/auth/access.h"
#include "server/auth/audit_log.h"

namespace shears::server {

inline grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context, const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Runs `fill` (returning absl::Status) and finishes the call with its status.
template <typename Fill>
grpc::ServerUnaryReactor* Respond(grpc::CallbackServerContext* context, Fill fill) {
  return FinishNow(context, fill());
}

// For calls the audit log records: authenticates the caller, checks its role may call `api`, runs
// `body(caller)`, and writes one audit line for `action` on the job `job_id()` names afterwards (a
// created job's id is known only then), refusals included, before finishing the call.
template <typename JobId, typename Body>
grpc::ServerUnaryReactor* RespondAudited(grpc::CallbackServerContext* context, const Authenticator& authenticator,
                                         Api api, AuditLog& audit, absl::string_view action, JobId job_id, Body body) {
  auto caller = authenticator.Authenticate(*context);
  absl::Status outcome = caller.ok() ? CheckRole(authenticator, *caller, api) : caller.status();
  if (outcome.ok()) outcome = body(*caller);
  audit.Record(caller.ok() ? &*caller : nullptr, action, job_id(), outcome);
  return FinishNow(context, outcome);
}

}  // namespace shears::server
