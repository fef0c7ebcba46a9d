#include "server/workers_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/limits.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "server/auth/access.h"
#include "server/unary.h"

namespace shears::server {
namespace {

// Long polls end within this even if the worker asked for longer, so that proxies and the worker's
// own deadline never cut them first.
constexpr absl::Duration kMaxLeaseWait = absl::Seconds(30);

absl::Status RequireLease(const std::string& job_id, const std::string& lease_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id: is required");
  if (lease_id.empty()) return absl::InvalidArgumentError("lease_id: is required");
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* WorkersService::LeaseJob(grpc::CallbackServerContext* context,
                                                   const v1::LeaseJobRequest* request,
                                                   v1::LeaseJobResponse* response) {
  if (auto caller = Authorize(*authenticator_, *context, Api::kWorkers); !caller.ok()) {
    return FinishNow(context, caller.status());
  }
  if (request->worker_id().empty()) {
    return FinishNow(context, absl::InvalidArgumentError("worker_id: is required"));
  }
  const absl::Duration wait = std::clamp(FromProtoDuration(request->wait()), absl::ZeroDuration(), kMaxLeaseWait);
  auto* reactor = context->DefaultReactor();
  dispatcher_->Enqueue({request->worker_id(), absl::Now() + wait, context, response, reactor});
  return reactor;
}

grpc::ServerUnaryReactor* WorkersService::Heartbeat(grpc::CallbackServerContext* context,
                                                    const v1::HeartbeatRequest* request,
                                                    v1::HeartbeatResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    SHEARS_RETURN_IF_ERROR(Authorize(*authenticator_, *context, Api::kWorkers).status());
    SHEARS_RETURN_IF_ERROR(RequireLease(request->job_id(), request->lease_id()));
    SHEARS_ASSIGN_OR_RETURN(bool cancel, store_->Heartbeat(request->job_id(), request->lease_id()));
    response->set_cancel_requested(cancel);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkersService::ReportEvents(grpc::CallbackServerContext* context,
                                                       const v1::ReportEventsRequest* request,
                                                       v1::ReportEventsResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    SHEARS_RETURN_IF_ERROR(Authorize(*authenticator_, *context, Api::kWorkers).status());
    SHEARS_RETURN_IF_ERROR(RequireLease(request->job_id(), request->lease_id()));
    if (request->events_size() > kMaxEventsPerCall) {
      return absl::InvalidArgumentError(absl::StrCat("events: ", request->events_size(),
                                                     " in one call, more than the limit of ", kMaxEventsPerCall));
    }
    if (request->batch() < 0) return absl::InvalidArgumentError("batch: must not be negative");
    std::vector<v1::JobEvent> events(request->events().begin(), request->events().end());
    SHEARS_ASSIGN_OR_RETURN(int64_t last, store_->AppendEvents(request->job_id(), request->lease_id(), events, request->batch()));
    response->set_last_sequence(last);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkersService::CompleteJob(grpc::CallbackServerContext* context,
                                                      const v1::CompleteJobRequest* request,
                                                      v1::CompleteJobResponse*) {
  return RespondAudited(context, *authenticator_, Api::kWorkers, *audit_, "CompleteJob",
                        [&] { return request->job_id(); }, [&](const Identity&) -> absl::Status {
                          SHEARS_RETURN_IF_ERROR(RequireLease(request->job_id(), request->lease_id()));
                          return store_->Complete(*request);
                        });
}

grpc::ServerUnaryReactor* WorkersService::ReleaseJob(grpc::CallbackServerContext* context,
                                                     const v1::ReleaseJobRequest* request,
                                                     v1::ReleaseJobResponse*) {
  return Respond(context, [&]() -> absl::Status {
    SHEARS_RETURN_IF_ERROR(Authorize(*authenticator_, *context, Api::kWorkers).status());
    SHEARS_RETURN_IF_ERROR(RequireLease(request->job_id(), request->lease_id()));
    return store_->Release(request->job_id(), request->lease_id());
  });
}

}  // namespace shears::server
