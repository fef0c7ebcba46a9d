#pragma once
// The shears-server process: job store, Pruning and Workers services, health and reflection, all on
// one gRPC port.

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "common/metrics_endpoint.h"
#include "common/rpc_limits.h"
#include "server/auth/audit_log.h"
#include "server/auth/authenticator.h"
#include "server/auth/uri_policies.h"
#include "server/event_hub.h"
#include "server/job_store.h"
#include "server/lease_dispatcher.h"
#include "server/retention.h"
#include "server/pruning_service.h"
#include "server/server_metrics.h"
#include "server/workers_service.h"

namespace shears::server {

struct ServerOptions {
  std::string listen = "0.0.0.0:50051";  // port 0 picks a free one
  // The job store (--db): a path or sqlite://PATH for one server, postgresql://... for several
  // replicas on one database (job_store.h).
  std::string db = "shears.db";
  StoreOptions store;
  // Ended jobs and their events are deleted this long after they ended (--retention); zero: kept.
  absl::Duration retention = absl::Hours(30 * 24);
  std::vector<std::string> file_roots;  // --allow-file-root; empty: file:// may name any path
  std::string metrics_listen;           // HOST:PORT of /metrics; empty: not served
  // How long Shutdown keeps answering, health NOT_SERVING, before it stops taking calls: time for
  // load balancers and Kubernetes readiness probes to stop sending new work.
  absl::Duration drain_delay = absl::ZeroDuration();
  // The largest request or answer taken or sent (--max-message-bytes).
  int max_message_bytes = kDefaultMaxMessageBytes;
  // Identities (--auth-token-file; authenticator.h has its format). Empty: the server is open, and
  // listens on loopback only.
  std::string auth_token_file;
  // JWTs taken as bearer tokens too (--jwt-jwks, --jwt-issuer, --jwt-audience), their "sub" named in
  // the identity file's jwt_subjects. Empty jwks_file: none.
  JwtOptions jwt;
  // TLS (--tls-cert, --tls-key: PEM files); with client_ca_file also mutual TLS, every client
  // presenting a certificate that CA signed. Empty: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string client_ca_file;
  // Where the audit lines go (--audit-log); empty: standard error.
  std::string audit_log_path;
  // Which URIs each tenant's jobs may name (--uri-policy; common/uri_policy.h). Empty: any.
  std::string uri_policy_path;
  // HOST:PORT of a plaintext port that serves grpc.health.v1 alone (--health-listen): Kubernetes'
  // gRPC probes speak no TLS. Empty: none.
  std::string health_listen;
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options);
  ~Server();

  int port() const { return port_; }
  // 0 without --health-listen.
  int health_port() const { return health_port_; }
  // 0 when metrics are not served.
  int metrics_port() const { return metrics_endpoint_ ? metrics_endpoint_->port() : 0; }
  // Marks the server NOT_SERVING, keeps answering for the drain delay, answers waiting workers, and
  // stops after in-flight calls finish or `grace` passes.
  void Shutdown(absl::Duration grace);
  // Re-reads the identity file and the URI policy (SIGHUP); what is in force stays when a file is
  // invalid.
  absl::Status Reload();
  // What the operator should know at start: an open server, plaintext beyond loopback.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  Server() = default;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<UriPolicies> uri_policies_;
  std::unique_ptr<AuditLog> audit_;
  std::vector<std::string> warnings_;
  std::shared_ptr<ServerMetrics> metrics_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  EventHub hub_;
  std::unique_ptr<LeaseDispatcher> dispatcher_;
  std::unique_ptr<Retention> retention_;
  std::unique_ptr<PruningService> pruning_;
  std::unique_ptr<WorkersService> workers_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<grpc::Server> health_grpc_;  // --health-listen
  int port_ = 0;
  int health_port_ = 0;
  absl::Duration drain_delay_;
  bool stopped_ = false;
};

}  // namespace shears::server
