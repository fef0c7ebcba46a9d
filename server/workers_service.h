#pragma once
// shears.v1.Workers: the internal protocol workers dial in with.

#include "server/auth/audit_log.h"
#include "server/auth/authenticator.h"
#include "server/job_store.h"
#include "server/lease_dispatcher.h"
#include "shears/v1/workers.grpc.pb.h"

namespace shears::server {

class WorkersService final : public v1::Workers::CallbackService {
 public:
  WorkersService(JobStore* store, LeaseDispatcher* dispatcher, const Authenticator* authenticator, AuditLog* audit)
      : store_(store), dispatcher_(dispatcher), authenticator_(authenticator), audit_(audit) {}

  grpc::ServerUnaryReactor* LeaseJob(grpc::CallbackServerContext* context, const v1::LeaseJobRequest* request,
                                     v1::LeaseJobResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context, const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* ReportEvents(grpc::CallbackServerContext* context,
                                         const v1::ReportEventsRequest* request,
                                         v1::ReportEventsResponse* response) override;
  grpc::ServerUnaryReactor* CompleteJob(grpc::CallbackServerContext* context, const v1::CompleteJobRequest* request,
                                        v1::CompleteJobResponse* response) override;
  grpc::ServerUnaryReactor* ReleaseJob(grpc::CallbackServerContext* context, const v1::ReleaseJobRequest* request,
                                       v1::ReleaseJobResponse* response) override;

 private:
  JobStore* const store_;
  LeaseDispatcher* const dispatcher_;
  const Authenticator* const authenticator_;
  AuditLog* const audit_;
};

}  // namespace shears::server
