#pragma once
// The PostgreSQL server of the tests: ctest's "postgres" fixture starts one for each build tree in
// <build>/postgres (scripts/test-postgres.sh), reached through its Unix socket as "postgres". Each
// test makes databases of its own there.

#include <string>

#include "absl/status/statusor.h"

namespace shears::testing {

// The socket directory of this tree's test server.
std::string TestPostgresDir();
// The URL of database `name` on the test server.
std::string TestPostgresUrl(const std::string& name);
// A new, empty database on the test server; its URL.
absl::StatusOr<std::string> NewTestDatabase();
// Runs `sql` as the superuser on database "postgres" (terminating connections, say).
absl::Status PostgresAdmin(const std::string& sql);

}  // namespace shears::testing
