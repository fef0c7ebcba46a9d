#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shears::server {

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options) {
  std::unique_ptr<Server> s(new Server());
  SHEARS_ASSIGN_OR_RETURN(s->store_, JobStore::Open(options.db_path, options.store));
  // The idle-worker count is read at scrapes, which begin after Start returns.
  s->metrics_ = std::make_shared<ServerMetrics>(s->store_.get(), [server = s.get()] {
    return server->dispatcher_->WaitingWorkers();
  });
  s->dispatcher_ = std::make_unique<LeaseDispatcher>(
      s->store_.get(), [metrics = s->metrics_.get()](int expired) { metrics->OnLeasesExpired(expired); });
  s->store_->AddListener([hub = &s->hub_, dispatcher = s->dispatcher_.get(),
                          metrics = s->metrics_.get()](const JobStore::Change& change) {
    hub->Notify(change.job.id());
    if (change.job.state() == v1::JOB_STATE_QUEUED) dispatcher->Wake();
    metrics->OnJobChanged(change);
  });
  s->pruning_ = std::make_unique<PruningService>(s->store_.get(), &s->hub_, options.file_roots);
  s->workers_ = std::make_unique<WorkersService>(s->store_.get(), s->dispatcher_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(s->metrics_->InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &s->port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(s->pruning_.get());
  builder.RegisterService(s->workers_.get());
  s->grpc_ = builder.BuildAndStart();
  if (s->grpc_ == nullptr || s->port_ == 0) {
    s->dispatcher_->Stop();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  if (!options.metrics_listen.empty()) {
    auto endpoint = MetricsEndpoint::Start(options.metrics_listen, s->metrics_);
    if (!endpoint.ok()) {
      s->Shutdown(absl::ZeroDuration());
      return endpoint.status();
    }
    s->metrics_endpoint_ = std::move(*endpoint);
  }
  // Set last, so that a server that fails to start does not wait out a drain.
  s->drain_delay_ = options.drain_delay;
  s->grpc_->GetHealthCheckService()->SetServingStatus(true);
  return s;
}

void Server::Shutdown(absl::Duration grace) {
  if (stopped_) return;
  stopped_ = true;
  grpc_->GetHealthCheckService()->SetServingStatus(false);
  absl::SleepFor(drain_delay_);
  dispatcher_->Stop();
  grpc_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoSeconds(grace));
  grpc_->Wait();
}

Server::~Server() { Shutdown(absl::Seconds(1)); }

}  // namespace shears::server
