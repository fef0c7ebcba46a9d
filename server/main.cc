// shears-server: the front service and job store.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/command_line.h"
#include "common/termination.h"
#include "server/server.h"

namespace {

constexpr char kUsage[] = R"(usage: shears-server [flags]
  --listen HOST:PORT     gRPC address (default 0.0.0.0:50051; port 0 picks a free one)
  --db URL               the job store: a SQLite file (a path or sqlite://PATH; default shears.db) for
                         one server, or postgresql://USER@HOST:PORT/DB?... for several replicas on
                         one database (libpq's URI; the password from PGPASSWORD or PGPASSFILE)
  --db-pool N            PostgreSQL: the most connections this server holds (default 8)
  --db-timeout DURATION  PostgreSQL: how long a call waits for a connection, a connection to open or
                         a statement to run before it answers UNAVAILABLE (default 10s)
  --lease-ttl DURATION   a job's lease lapses this long after the last heartbeat (default 30s)
  --max-attempts N       a job whose lease lapses N times fails (default 3)
  --max-crashes N        a job whose engine process crashed N times (an abort, a segfault, the OOM
                         killer) fails instead of reaching another worker (default 2)
  --port-file PATH       write the bound port here once serving
  --retention DURATION   ended jobs and their events are deleted this long after they ended
                         (default 720h, 30 days; 0s keeps them)
  --max-db-bytes N       the job store's size bound (default 0: the disk's); past it, as on a full
                         disk, writes answer UNAVAILABLE (workers retry) until retention frees room
  --allow-file-root DIR  file:// URIs must lie under DIR (repeatable; none given: anywhere)
  --metrics-listen HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks one)
  --metrics-port-file PATH    write the metrics port here once serving
  --drain-delay DURATION on SIGTERM, report NOT_SERVING and keep answering this long before stopping
                         (default 0s; under Kubernetes a few readiness periods)
  --max-message-bytes N  the largest request or answer taken or sent (default 16777216, 16 MiB;
                         at least 1 MiB); workers must be given the same
  --auth-token-file PATH identities: {"tokens": [{"sha256", "principal", "tenant", "role"}], "certificates":
                         [{"subject", ...}]}, re-read on SIGHUP (docs/security.md). Without it the
                         server listens on loopback only and every caller is an admin
  --jwt-jwks PATH        also take JWTs as bearer tokens (RS256, ES256), signed by a key of this JWKS
                         file (re-read on SIGHUP), with --jwt-issuer ISS and --jwt-audience AUD;
                         their "sub" is mapped by the identity file's "jwt_subjects"
  --jwt-issuer ISS
  --jwt-audience AUD
  --tls-cert PATH        serve TLS with this PEM certificate chain (and --tls-key PATH, its key)
  --tls-key PATH
  --client-ca PATH       mutual TLS: clients must present a certificate this PEM CA signed
  --uri-policy PATH      which URIs each tenant's jobs may name: {"tenants": {"team-a": {"allow": [URI
                         prefixes], "private_networks": false}, "*": {...}}}, re-read on SIGHUP
                         (docs/security.md); the workers take the same file
  --tenant-quota N       the most queued and running jobs a tenant may have (default 0: no limit)
  --audit-log PATH       append the audit lines (create, cancel, complete) here (default: stderr)
  --health-listen HOST:PORT  also serve grpc.health.v1 alone, in plaintext, here (Kubernetes' gRPC
                         probes speak no TLS); port 0 picks one
  --health-port-file PATH    write the health port here once serving
)";

int Fail(const std::string& message) {
  std::cerr << "shears-server: " << message << "\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  shears::BlockTerminationSignals();
  shears::BlockReloadSignal();
  auto cl = shears::CommandLine::Parse(argc, argv, {"help"});
  if (!cl.ok()) return Fail(std::string(cl.status().message()));
  if (cl->Has("help")) {
    std::cout << kUsage;
    return 0;
  }
  if (auto st = cl->CheckKnown({"listen", "db", "db-pool", "db-timeout", "lease-ttl", "max-attempts", "max-crashes", "retention", "max-db-bytes", "port-file", "allow-file-root",
                                "metrics-listen", "metrics-port-file", "drain-delay", "max-message-bytes", "auth-token-file",
                                "tls-cert", "tls-key", "client-ca", "tenant-quota", "audit-log", "health-listen",
                                "health-port-file", "uri-policy", "jwt-jwks", "jwt-issuer", "jwt-audience", "help"});
      !st.ok()) {
    return Fail(std::string(st.message()));
  }
  shears::server::ServerOptions options;
  options.listen = cl->GetOr("listen", options.listen);
  options.db = cl->GetOr("db", options.db);
  auto pool = cl->GetInt("db-pool", options.store.database.pool_size);
  if (!pool.ok()) return Fail(std::string(pool.status().message()));
  if (*pool < 1 || *pool > 1000) return Fail("--db-pool must be between 1 and 1000");
  options.store.database.pool_size = static_cast<int>(*pool);
  auto db_timeout = cl->GetDuration("db-timeout", options.store.database.timeout);
  if (!db_timeout.ok()) return Fail(std::string(db_timeout.status().message()));
  if (*db_timeout < absl::Seconds(1)) return Fail("--db-timeout must be at least 1s");
  options.store.database.timeout = *db_timeout;
  auto ttl = cl->GetDuration("lease-ttl", options.store.lease_ttl);
  auto attempts = cl->GetInt("max-attempts", options.store.max_attempts);
  if (!ttl.ok()) return Fail(std::string(ttl.status().message()));
  if (!attempts.ok()) return Fail(std::string(attempts.status().message()));
  auto crashes = cl->GetInt("max-crashes", options.store.max_crashes);
  if (!crashes.ok()) return Fail(std::string(crashes.status().message()));
  if (*crashes < 1) return Fail("--max-crashes must be at least 1");
  options.store.max_crashes = static_cast<int>(*crashes);
  auto retention = cl->GetDuration("retention", options.retention);
  if (!retention.ok()) return Fail(std::string(retention.status().message()));
  if (*retention < absl::ZeroDuration()) return Fail("--retention must not be negative");
  options.retention = *retention;
  auto db_bytes = cl->GetInt("max-db-bytes", 0);
  if (!db_bytes.ok()) return Fail(std::string(db_bytes.status().message()));
  if (*db_bytes < 0) return Fail("--max-db-bytes must not be negative");
  options.store.max_db_bytes = *db_bytes;
  auto drain = cl->GetDuration("drain-delay", options.drain_delay);
  if (!drain.ok()) return Fail(std::string(drain.status().message()));
  options.drain_delay = *drain;
  auto max_bytes = shears::MaxMessageBytesFlag(*cl, options.max_message_bytes);
  if (!max_bytes.ok()) return Fail(std::string(max_bytes.status().message()));
  options.max_message_bytes = *max_bytes;
  auto quota = cl->GetInt("tenant-quota", 0);
  if (!quota.ok()) return Fail(std::string(quota.status().message()));
  if (*quota < 0) return Fail("--tenant-quota must not be negative");
  options.store.tenant_quota = *quota;
  options.auth_token_file = cl->GetOr("auth-token-file", "");
  options.tls_cert_file = cl->GetOr("tls-cert", "");
  options.tls_key_file = cl->GetOr("tls-key", "");
  options.client_ca_file = cl->GetOr("client-ca", "");
  options.audit_log_path = cl->GetOr("audit-log", "");
  options.health_listen = cl->GetOr("health-listen", "");
  options.uri_policy_path = cl->GetOr("uri-policy", "");
  options.jwt.jwks_file = cl->GetOr("jwt-jwks", "");
  options.jwt.issuer = cl->GetOr("jwt-issuer", "");
  options.jwt.audience = cl->GetOr("jwt-audience", "");
  options.store.lease_ttl = *ttl;
  options.store.max_attempts = static_cast<int>(*attempts);
  options.file_roots = cl->GetAll("allow-file-root");
  options.metrics_listen = cl->GetOr("metrics-listen", "");

  auto server = shears::server::Server::Start(options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::cout << "shears-server listening on port " << (*server)->port() << " (db " << shears::server::sql::RedactUrl(options.db) << ")"
            << std::endl;
  for (const auto& warning : (*server)->warnings()) std::cout << "shears-server: warning: " << warning << std::endl;
  if ((*server)->metrics_port() != 0) {
    std::cout << "shears-server: metrics on port " << (*server)->metrics_port() << std::endl;
  }
  for (const auto& [flag, port] : {std::pair{"port-file", (*server)->port()},
                                   std::pair{"metrics-port-file", (*server)->metrics_port()},
                                   std::pair{"health-port-file", (*server)->health_port()}}) {
    auto path = cl->Get(flag);
    if (!path || port == 0) continue;
    if (auto st = shears::WritePortFile(*path, port); !st.ok()) return Fail(std::string(st.message()));
  }
  const int sig = shears::WaitForTerminationSignal([&server] {
    const absl::Status reloaded = (*server)->Reload();
    std::cout << "shears-server: SIGHUP: "
              << (reloaded.ok() ? "identities and URI policy reloaded"
                                : absl::StrCat("kept what was in force: ", reloaded.message()))
              << std::endl;
  });
  std::cout << "shears-server: signal " << sig << ", draining" << std::endl;
  (*server)->Shutdown(absl::Seconds(10));
  return 0;
}
