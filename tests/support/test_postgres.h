#pragma once
// The PostgreSQL server of the tests: ctest's "postgres" fixture starts one for each build tree in
// <build>/postgres (scripts/test-postgres.sh), reached through its Unix socket as "postgres". Each
// test makes databases of its own there.

#include <string>

#include "absl/status/statusor.h"

struct pg_conn;  // libpq's PGconn

namespace shears::testing {

// The socket directory of this tree's test server.
std::string TestPostgresDir();
// The URL of database `name` on the test server.
std::string TestPostgresUrl(const std::string& name);
// A new, empty database on the test server; its URL.
absl::StatusOr<std::string> NewTestDatabase();
// Runs `sql` as the superuser on database "postgres" (terminating connections, say).
absl::Status PostgresAdmin(const std::string& sql);

// A connection of the test's own to `url`, held open: a transaction that holds a lock, say.
class PostgresConnection {
 public:
  explicit PostgresConnection(const std::string& url);
  ~PostgresConnection();
  PostgresConnection(const PostgresConnection&) = delete;
  PostgresConnection& operator=(const PostgresConnection&) = delete;
  absl::Status Exec(const std::string& sql);

 private:
  ::pg_conn* conn_;
};

}  // namespace shears::testing
