#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"

namespace shears::server {
namespace {

// Whether HOST:PORT names a loopback address (127.0.0.0/8, ::1 or localhost).
bool IsLoopback(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& options) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key: give both or neither");
  }
  if (options.tls_cert_file.empty()) {
    if (!options.client_ca_file.empty()) return absl::InvalidArgumentError("--client-ca: needs --tls-cert and --tls-key");
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl(options.client_ca_file.empty()
                                            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  SHEARS_RETURN_IF_ERROR(ReadFlagFiles({{"--tls-cert", options.tls_cert_file, &pair.cert_chain},
                                        {"--tls-key", options.tls_key_file, &pair.private_key},
                                        {"--client-ca", options.client_ca_file, &ssl.pem_root_certs}}));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options) {
  std::unique_ptr<Server> s(new Server());
  if (options.auth_token_file.empty()) {
    if (!options.jwt.jwks_file.empty()) {
      return absl::InvalidArgumentError("--jwt-jwks: needs --auth-token-file, whose jwt_subjects name the callers");
    }
    if (!IsLoopback(options.listen)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--listen ", options.listen,
          ": without --auth-token-file the server serves loopback only (127.0.0.1, [::1], localhost)"));
    }
    s->authenticator_ = Authenticator::Open();
    s->warnings_.push_back("no --auth-token-file: serving loopback only, and every caller is an admin");
  } else {
    std::unique_ptr<JwtVerifier> jwt;
    if (!options.jwt.jwks_file.empty() || !options.jwt.issuer.empty() || !options.jwt.audience.empty()) {
      SHEARS_ASSIGN_OR_RETURN(jwt, JwtVerifier::Open(options.jwt));
    }
    SHEARS_ASSIGN_OR_RETURN(s->authenticator_, Authenticator::FromFile(options.auth_token_file, std::move(jwt)));
  }
  SHEARS_ASSIGN_OR_RETURN(auto credentials, Credentials(options));
  if (options.tls_cert_file.empty() && !IsLoopback(options.listen)) {
    s->warnings_.push_back("no --tls-cert: tokens and jobs cross the network in plaintext");
  }
  SHEARS_ASSIGN_OR_RETURN(s->uri_policies_, UriPolicies::Open(options.uri_policy_path));
  if (options.uri_policy_path.empty() && !options.auth_token_file.empty()) {
    s->warnings_.push_back("no --uri-policy: every tenant's jobs may name any URI the workers reach");
  }
  SHEARS_ASSIGN_OR_RETURN(s->audit_, AuditLog::Open(options.audit_log_path));
  SHEARS_ASSIGN_OR_RETURN(s->store_, JobStore::Open(options.db, options.store));
  // The idle-worker count is read at scrapes, which begin after Start returns.
  s->metrics_ = std::make_shared<ServerMetrics>(s->store_.get(), [server = s.get()] {
    return server->dispatcher_->WaitingWorkers();
  });
  s->dispatcher_ = std::make_unique<LeaseDispatcher>(
      s->store_.get(), [metrics = s->metrics_.get()](int expired) { metrics->OnLeasesExpired(expired); });
  s->store_->AddListener([hub = &s->hub_, dispatcher = s->dispatcher_.get(),
                          metrics = s->metrics_.get()](const JobStore::Change& change) {
    if (change.job.id().empty()) {  // word of the other replicas was lost for a while
      hub->NotifyAll();
      dispatcher->Wake();
      return;
    }
    hub->Notify(change.job.id());
    if (change.job.state() == v1::JOB_STATE_QUEUED) dispatcher->Wake();
    // Each replica counts the transitions it made; Prometheus sums the replicas.
    if (!change.remote) metrics->OnJobChanged(change);
  });
  if (options.retention > absl::ZeroDuration()) {
    s->retention_ = std::make_unique<Retention>(s->store_.get(), options.retention,
                                                [metrics = s->metrics_.get()](int n) { metrics->OnJobsDeleted(n); });
  }
  s->pruning_ = std::make_unique<PruningService>(s->store_.get(), &s->hub_, options.file_roots,
                                                 s->authenticator_.get(), s->uri_policies_.get(), s->audit_.get());
  s->workers_ = std::make_unique<WorkersService>(s->store_.get(), s->dispatcher_.get(), s->authenticator_.get(),
                                                 s->audit_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(s->metrics_->InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.AddListeningPort(options.listen, credentials, &s->port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(s->pruning_.get());
  builder.RegisterService(s->workers_.get());
  s->grpc_ = builder.BuildAndStart();
  if (s->grpc_ == nullptr || s->port_ == 0) {
    s->dispatcher_->Stop();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  if (!options.health_listen.empty()) {
    grpc::ServerBuilder health;
    health.AddListeningPort(options.health_listen, grpc::InsecureServerCredentials(), &s->health_port_);
    s->health_grpc_ = health.BuildAndStart();
    if (s->health_grpc_ == nullptr || s->health_port_ == 0) {
      s->Shutdown(absl::ZeroDuration());
      return absl::UnavailableError(absl::StrCat("cannot listen on --health-listen ", options.health_listen));
    }
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
  for (grpc::Server* server : {s->grpc_.get(), s->health_grpc_.get()}) {
    if (server != nullptr) server->GetHealthCheckService()->SetServingStatus(true);
  }
  return s;
}

void Server::Shutdown(absl::Duration grace) {
  if (stopped_) return;
  stopped_ = true;
  if (grpc_ == nullptr) {  // Start failed before it served
    if (dispatcher_ != nullptr) dispatcher_->Stop();
    return;
  }
  for (grpc::Server* server : {grpc_.get(), health_grpc_.get()}) {
    if (server != nullptr) server->GetHealthCheckService()->SetServingStatus(false);
  }
  absl::SleepFor(drain_delay_);
  // Long polls answered empty and streams ended UNAVAILABLE: their clients go on elsewhere rather
  // than wait out the grace below.
  dispatcher_->Stop();
  hub_.Drain();
  grpc_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoSeconds(grace));
  grpc_->Wait();
  if (health_grpc_ != nullptr) {
    health_grpc_->Shutdown(std::chrono::system_clock::now());
    health_grpc_->Wait();
  }
}

absl::Status Server::Reload() {
  absl::Status identities = authenticator_->Reload();
  absl::Status policy = uri_policies_->Reload();
  return identities.ok() ? policy : identities;
}

Server::~Server() {
  Shutdown(absl::Seconds(1));
  // Other replicas' announcements go on arriving; the hub and the dispatcher are about to go.
  if (store_ != nullptr) store_->RemoveListeners();
}

}  // namespace shears::server
