#pragma once
// sql::Database over SQLite: one connection, lent to one session at a time.

#include <sqlite3.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/sql/database.h"

namespace shears::server::sql {

// An SQLite result code as a status: a full store or a failed write is UNAVAILABLE (retried by
// callers), a constraint ALREADY_EXISTS, anything else INTERNAL.
absl::Status SqliteError(int rc, const std::string& message);

class SqliteDatabase : public Database, private Connection {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> Open(const std::string& path);
  ~SqliteDatabase() override;

  Dialect dialect() const override { return Dialect::kSqlite; }
  absl::StatusOr<Session> Acquire() override;
  absl::Status BeginWrite(Connection& connection) override { return connection.Exec("BEGIN IMMEDIATE"); }

 private:
  explicit SqliteDatabase(sqlite3* db) : db_(db) {}
  std::unique_ptr<Statement> Prepare(const std::string& sql) override;
  absl::Status Exec(const std::string& sql) override;

  sqlite3* const db_;
  absl::Mutex lent_mu_;
  bool lent_ ABSL_GUARDED_BY(lent_mu_) = false;
};

}  // namespace shears::server::sql
