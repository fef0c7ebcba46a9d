#pragma once
// shears.v1.Pruning: the public API, on the gRPC callback API.

#include <string>
#include <vector>

#include "server/auth/audit_log.h"
#include "server/auth/authenticator.h"
#include "server/auth/uri_policies.h"
#include "server/event_hub.h"
#include "server/job_store.h"
#include "shears/v1/pruning.grpc.pb.h"

namespace shears::server {

class PruningService final : public v1::Pruning::CallbackService {
 public:
  // `file_roots`: where file:// URIs may point (empty: anywhere).
  PruningService(JobStore* store, EventHub* hub, std::vector<std::string> file_roots,
                 const Authenticator* authenticator, const UriPolicies* uri_policies, AuditLog* audit)
      : store_(store),
        hub_(hub),
        file_roots_(std::move(file_roots)),
        authenticator_(authenticator),
        uri_policies_(uri_policies),
        audit_(audit) {}

  grpc::ServerUnaryReactor* CreateJob(grpc::CallbackServerContext* context, const v1::CreateJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context, const v1::GetJobRequest* request,
                                   v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context, const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context, const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* context,
                                                   const v1::WatchJobRequest* request) override;

 private:
  JobStore* const store_;
  EventHub* const hub_;
  const std::vector<std::string> file_roots_;
  const Authenticator* const authenticator_;
  const UriPolicies* const uri_policies_;
  AuditLog* const audit_;
};

}  // namespace shears::server
