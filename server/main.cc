// shears-server: the front service and job store.
#include <fstream>
#include <iostream>

#include "common/command_line.h"
#include "common/termination.h"
#include "server/server.h"

namespace {

constexpr char kUsage[] = R"(usage: shears-server [flags]
  --listen HOST:PORT     gRPC address (default 0.0.0.0:50051; port 0 picks a free one)
  --db PATH              SQLite job store (default shears.db)
  --lease-ttl DURATION   a job's lease lapses this long after the last heartbeat (default 30s)
  --max-attempts N       a job whose lease lapses N times fails (default 3)
  --port-file PATH       write the bound port here once serving
  --allow-file-root DIR  file:// URIs must lie under DIR (repeatable; none given: anywhere)
)";

int Fail(const std::string& message) {
  std::cerr << "shears-server: " << message << "\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  shears::BlockTerminationSignals();
  auto cl = shears::CommandLine::Parse(argc, argv, {"help"});
  if (!cl.ok()) return Fail(std::string(cl.status().message()));
  if (cl->Has("help")) {
    std::cout << kUsage;
    return 0;
  }
  if (auto st = cl->CheckKnown({"listen", "db", "lease-ttl", "max-attempts", "port-file", "allow-file-root", "help"}); !st.ok()) {
    return Fail(std::string(st.message()));
  }
  shears::server::ServerOptions options;
  options.listen = cl->GetOr("listen", options.listen);
  options.db_path = cl->GetOr("db", options.db_path);
  auto ttl = cl->GetDuration("lease-ttl", options.store.lease_ttl);
  auto attempts = cl->GetInt("max-attempts", options.store.max_attempts);
  if (!ttl.ok()) return Fail(std::string(ttl.status().message()));
  if (!attempts.ok()) return Fail(std::string(attempts.status().message()));
  options.store.lease_ttl = *ttl;
  options.store.max_attempts = static_cast<int>(*attempts);
  options.file_roots = cl->GetAll("allow-file-root");


  auto server = shears::server::Server::Start(options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::cout << "shears-server listening on port " << (*server)->port() << " (db " << options.db_path << ")"
            << std::endl;
  if (auto path = cl->Get("port-file")) {
    std::ofstream(*path + ".tmp") << (*server)->port() << "\n";
    std::rename((*path + ".tmp").c_str(), path->c_str());
  }
  const int sig = shears::WaitForTerminationSignal();
  std::cout << "shears-server: signal " << sig << ", draining" << std::endl;
  (*server)->Shutdown(absl::Seconds(10));
  return 0;
}
