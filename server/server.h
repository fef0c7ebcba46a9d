#pragma once
// The shears-server process: job store, Pruning and Workers services, health and reflection, all on
// one gRPC port.

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "server/event_hub.h"
#include "server/job_store.h"
#include "server/lease_dispatcher.h"
#include "server/pruning_service.h"
#include "server/workers_service.h"

namespace shears::server {

struct ServerOptions {
  std::string listen = "0.0.0.0:50051";  // port 0 picks a free one
  std::string db_path = "shears.db";
  StoreOptions store;
  std::vector<std::string> file_roots;  // --allow-file-root; empty: file:// may name any path
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options);
  ~Server();

  int port() const { return port_; }
  // Marks the server NOT_SERVING, answers waiting workers, and stops after in-flight calls finish
  // or `grace` passes.
  void Shutdown(absl::Duration grace);

 private:
  Server() = default;
  std::unique_ptr<JobStore> store_;
  EventHub hub_;
  std::unique_ptr<LeaseDispatcher> dispatcher_;
  std::unique_ptr<PruningService> pruning_;
  std::unique_ptr<WorkersService> workers_;
  std::unique_ptr<grpc::Server> grpc_;
  int port_ = 0;
  bool stopped_ = false;
};

}  // namespace shears::server
