#pragma once
// Who is calling: every call to the server is made by one identity, with one role, in one tenant.

#include <string>

#include "absl/strings/string_view.h"

namespace shears::server {

enum class Role {
  kClient,  // the Pruning API, for its own tenant's jobs
  kWorker,  // the Workers API only: leases, heartbeats, events, completion
  kAdmin,   // the Pruning API for every tenant
};

struct Identity {
  std::string principal;  // who, for the audit log ("alice", "CN=worker-3")
  std::string tenant;     // whose jobs it creates and sees; empty for workers
  Role role = Role::kClient;
};

absl::string_view RoleName(Role role);

}  // namespace shears::server
