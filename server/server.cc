#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shears::server {

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options) {
  std::unique_ptr<Server> s(new Server());
  SHEARS_ASSIGN_OR_RETURN(s->store_, JobStore::Open(options.db_path, options.store));
  s->dispatcher_ = std::make_unique<LeaseDispatcher>(s->store_.get());
  s->store_->AddListener([hub = &s->hub_, dispatcher = s->dispatcher_.get()](const std::string& job_id,
                                                                            v1::JobState state) {
    hub->Notify(job_id);
    if (state == v1::JOB_STATE_QUEUED) dispatcher->Wake();
  });
  s->pruning_ = std::make_unique<PruningService>(s->store_.get(), &s->hub_, options.file_roots);
  s->workers_ = std::make_unique<WorkersService>(s->store_.get(), s->dispatcher_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &s->port_);
  builder.RegisterService(s->pruning_.get());
  builder.RegisterService(s->workers_.get());
  s->grpc_ = builder.BuildAndStart();
  if (s->grpc_ == nullptr || s->port_ == 0) {
    s->dispatcher_->Stop();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  s->grpc_->GetHealthCheckService()->SetServingStatus(true);
  return s;
}

void Server::Shutdown(absl::Duration grace) {
  if (stopped_) return;
  stopped_ = true;
  grpc_->GetHealthCheckService()->SetServingStatus(false);
  dispatcher_->Stop();
  grpc_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoSeconds(grace));
  grpc_->Wait();
}

Server::~Server() { Shutdown(absl::Seconds(1)); }

}  // namespace shears::server
