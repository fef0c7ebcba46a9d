#pragma once
// The PostgreSQL server of the tests: ctest's "postgres" fixture starts one for each build tree in
// <build>/postgres (scripts/test-postgres.sh), reached through its Unix socket as "postgres". Each
// test makes databases of its own there.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

struct pg_conn;  // libpq's PGconn

namespace shears::testing {

// The socket directory of this tree's test server. Inline, like the URL: tests that start servers
// (tests/support/process.h) name databases without linking libpq.
inline std::string TestPostgresDir() { return absl::StrCat(SHEARS_BINARY_DIR, "/postgres"); }
// The URL of database `name` on the test server.
inline std::string TestPostgresUrl(const std::string& name) {
  return absl::StrCat("postgresql:///", name, "?host=", TestPostgresDir(), "&user=postgres");
}
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
  // Fails UNAVAILABLE, naming the test server, when the connection could not be made.
  absl::Status Exec(const std::string& sql);

 private:
  ::pg_conn* conn_;
};

}  // namespace shears::testing
