#pragma once
// sql::Database over PostgreSQL (libpq): a pool of connections, statement timeouts, errors that
// say whether a retry may pass, and LISTEN/NOTIFY between the server replicas sharing the database.

#include <libpq-fe.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/sql/database.h"

namespace shears::server::sql {

class PostgresDatabase : public Database {
 public:
  // Opens one connection at once, so that a wrong URL or an unreachable server fails the start.
  static absl::StatusOr<std::unique_ptr<PostgresDatabase>> Open(const std::string& url, const DatabaseOptions& options);
  ~PostgresDatabase() override;

  Dialect dialect() const override { return Dialect::kPostgres; }
  absl::StatusOr<Session> Acquire() override;
  absl::Status BeginWrite(Connection& connection) override { return connection.Exec("BEGIN"); }
  absl::Status Announce(Connection& connection, const std::string& payload) override;
  void Listen(std::function<void(const std::string& payload)> heard) override;

 private:
  class PgConnection;
  PostgresDatabase(std::string url, DatabaseOptions options);
  // A new session with the server, within options_.timeout; UNAVAILABLE when it cannot be had.
  absl::StatusOr<std::unique_ptr<PgConnection>> Connect() const;
  void GiveBack(std::unique_ptr<PgConnection> connection) ABSL_LOCKS_EXCLUDED(mu_);
  void ListenLoop();

  const std::string url_;
  const DatabaseOptions options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<PgConnection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle and lent
  bool listening_ ABSL_GUARDED_BY(mu_) = false;  // the first LISTEN was made

  std::function<void(const std::string&)> heard_;
  std::atomic<bool> stop_{false};
  std::thread listener_;
};

}  // namespace shears::server::sql
