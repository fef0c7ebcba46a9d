#include "tests/support/test_postgres.h"

#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"

namespace shears::testing {

absl::Status PostgresAdmin(const std::string& sql) { return PostgresConnection(TestPostgresUrl("postgres")).Exec(sql); }

PostgresConnection::PostgresConnection(const std::string& url) : conn_(PQconnectdb(url.c_str())) {
  PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
}

PostgresConnection::~PostgresConnection() { PQfinish(conn_); }

absl::Status PostgresConnection::Exec(const std::string& sql) {
  if (PQstatus(conn_) != CONNECTION_OK) {
    return absl::UnavailableError(absl::StrCat("the test PostgreSQL server (ctest's postgres fixture, ",
                                               "scripts/test-postgres.sh start ", TestPostgresDir(),
                                               "): ", PQerrorMessage(conn_)));
  }
  PGresult* result = PQexec(conn_, sql.c_str());
  const ExecStatusType status = PQresultStatus(result);
  absl::Status st = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK
                        ? absl::OkStatus()
                        : absl::InternalError(absl::StrCat(sql, ": ", PQresultErrorMessage(result)));
  PQclear(result);
  return st;
}

absl::StatusOr<std::string> NewTestDatabase() {
  static std::atomic<int> count{0};
  const std::string name = absl::StrCat("test_", getpid(), "_", count++);
  if (absl::Status st = PostgresAdmin(absl::StrCat("DROP DATABASE IF EXISTS ", name)); !st.ok()) return st;
  if (absl::Status st = PostgresAdmin(absl::StrCat("CREATE DATABASE ", name)); !st.ok()) return st;
  return TestPostgresUrl(name);
}

}  // namespace shears::testing
