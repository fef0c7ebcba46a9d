#include "server/job_store_schema.h"

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/uri.h"
#include "shears/v1/job.pb.h"

namespace shears::server {
namespace {

constexpr char kSqliteSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- creation order, and the page token
  id TEXT NOT NULL UNIQUE,
  tenant TEXT NOT NULL,
  request_id TEXT,                         -- NULL when the client sent none
  state INTEGER NOT NULL,
  job BLOB NOT NULL,                       -- serialized shears.v1.Job
  lease_id TEXT,
  worker_id TEXT,
  lease_expire_ms INTEGER,
  last_sequence INTEGER NOT NULL DEFAULT 0,
  last_batch INTEGER NOT NULL DEFAULT 0,   -- the lease's last event batch applied (ReportEvents.batch)
  output_uri TEXT,                         -- canonical; no two jobs that have not ended overlap
  end_ms INTEGER,                          -- when an ended job ended; NULL before (retention)
  UNIQUE (tenant, request_id)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, seq);
CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs(end_ms) WHERE end_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs(tenant, state, seq);
CREATE TABLE IF NOT EXISTS events (
  job_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  event BLOB NOT NULL,                     -- serialized shears.v1.JobEvent
  PRIMARY KEY (job_id, sequence)
) WITHOUT ROWID;
)sql";

// The same tables in PostgreSQL's types; the columns say what they hold above.
constexpr char kPostgresSchema[] = R"sql(
CREATE TABLE jobs (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  tenant TEXT NOT NULL,
  request_id TEXT,
  state INTEGER NOT NULL,
  job BYTEA NOT NULL,
  lease_id TEXT,
  worker_id TEXT,
  lease_expire_ms BIGINT,
  last_sequence BIGINT NOT NULL DEFAULT 0,
  last_batch BIGINT NOT NULL DEFAULT 0,
  output_uri TEXT,
  end_ms BIGINT,
  UNIQUE (tenant, request_id)
);
CREATE INDEX jobs_by_state ON jobs(state, seq);
CREATE INDEX jobs_by_end ON jobs(end_ms) WHERE end_ms IS NOT NULL;
CREATE INDEX jobs_by_tenant ON jobs(tenant, state, seq);
CREATE TABLE events (
  job_id TEXT NOT NULL,
  sequence BIGINT NOT NULL,
  event BYTEA NOT NULL,
  PRIMARY KEY (job_id, sequence)
);
)sql";

// PostgreSQL's migrations: each takes a store to `version`. A store at 0 (a new database) runs all.
const std::vector<std::pair<int, const char*>>& PostgresMigrations() {
  static const auto* migrations = new std::vector<std::pair<int, const char*>>{{2, kPostgresSchema}};
  return *migrations;
}
// The advisory lock replicas take turns on while they migrate ("shears" in ASCII).
constexpr int64_t kMigrationLock = 0x736865617273;

// A version 0 store (no tenants, request ids unique across the server) becomes version 1 with
// every job in the default tenant. SQLite cannot drop a column's UNIQUE, so the table is rebuilt.
constexpr char kMigrateFromVersion0[] = R"sql(
ALTER TABLE jobs RENAME TO jobs_v0;
DROP INDEX IF EXISTS jobs_by_state;
)sql";
constexpr char kCopyFromVersion0[] = R"sql(
INSERT INTO jobs (seq, id, tenant, request_id, state, job, lease_id, worker_id, lease_expire_ms, last_sequence)
  SELECT seq, id, 'default', request_id, state, job, lease_id, worker_id, lease_expire_ms, last_sequence FROM jobs_v0;
-- output_uri stays NULL for jobs that had ended; FillOutputUris fills it for the others.
DROP TABLE jobs_v0;
)sql";
// Version 1 to 2: the column before the schema's index on it; FillEndTimes fills it.
constexpr char kMigrateFromVersion1[] = "ALTER TABLE jobs ADD COLUMN end_ms INTEGER;";

// Sets `column` of the jobs in `states` to what `value` makes of each record.
template <typename ValueOf>
absl::Status FillColumn(sql::Connection& db, const char* column, std::vector<v1::JobState> states, ValueOf value) {
  std::vector<std::pair<std::string, std::invoke_result_t<ValueOf, const v1::Job&>>> rows;  // id, value
  for (v1::JobState state : states) {
    auto q = db.Prepare("SELECT id, job FROM jobs WHERE state = ?");
    q->Bind(1, int64_t{state});
    for (;;) {
      SHEARS_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      v1::Job job;
      if (!job.ParseFromString(q->Text(1))) return absl::DataLossError(absl::StrCat("job ", q->Text(0), ": corrupt record"));
      rows.emplace_back(q->Text(0), value(job));
    }
  }
  for (const auto& [id, v] : rows) {
    auto update = db.Prepare(absl::StrCat("UPDATE jobs SET ", column, " = ? WHERE id = ?"));
    update->Bind(1, v).Bind(2, id);
    SHEARS_RETURN_IF_ERROR(update->Run());
  }
  return absl::OkStatus();
}

// Sets output_uri for the queued and running jobs of a store migrated from version 0.
absl::Status FillOutputUris(sql::Connection& db) {
  return FillColumn(db, "output_uri", {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING},
                    [](const v1::Job& job) { return CanonicalUri(job.spec().output().uri()); });
}

// Sets end_ms for the ended jobs of a store migrated from version 0 or 1.
absl::Status FillEndTimes(sql::Connection& db) {
  return FillColumn(db, "end_ms", {v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED},
                    [](const v1::Job& job) { return absl::ToUnixMillis(FromProtoTime(job.end_time())); });
}

absl::StatusOr<int64_t> QueryInt(sql::Connection& db, const std::string& sql) {
  auto q = db.Prepare(sql);
  SHEARS_ASSIGN_OR_RETURN(bool row, q->Step());
  return row ? q->Int(0) : 0;
}

absl::Status NotNewer(int64_t found) {
  if (found <= kJobStoreSchemaVersion) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("job store schema version ", found, " is newer than this server's (", kJobStoreSchemaVersion, ")"));
}

absl::Status MigrateSqlite(sql::Database& database, sql::Connection& db) {
  // WAL lets readers proceed during a write; FULL syncs every commit, so an acknowledged job survives
  // a power cut.
  SHEARS_RETURN_IF_ERROR(db.Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"));
  SHEARS_ASSIGN_OR_RETURN(int64_t found, QueryInt(db, "PRAGMA user_version"));
  SHEARS_ASSIGN_OR_RETURN(int64_t tables, QueryInt(db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"));
  SHEARS_RETURN_IF_ERROR(NotNewer(found));
  const bool version0 = found == 0 && tables > 0;
  const bool version1 = found == 1;
  SHEARS_RETURN_IF_ERROR(database.BeginWrite(db));
  absl::Status st = version0 ? db.Exec(kMigrateFromVersion0) : absl::OkStatus();
  if (st.ok() && version1) st = db.Exec(kMigrateFromVersion1);
  if (st.ok()) st = db.Exec(kSqliteSchema);
  if (st.ok() && version0) st = db.Exec(kCopyFromVersion0);
  if (st.ok() && version0) st = FillOutputUris(db);
  if (st.ok() && (version0 || version1)) st = FillEndTimes(db);
  if (st.ok()) st = db.Exec(absl::StrCat("PRAGMA user_version = ", kJobStoreSchemaVersion));
  if (st.ok()) st = db.Exec("COMMIT");
  if (!st.ok()) db.Exec("ROLLBACK").IgnoreError();
  return st;
}

absl::Status MigratePostgres(sql::Database& database, sql::Connection& db) {
  SHEARS_RETURN_IF_ERROR(database.BeginWrite(db));
  absl::Status st = db.Exec(absl::StrCat("SELECT pg_advisory_xact_lock(", kMigrationLock, ")"));
  if (st.ok()) st = db.Exec("CREATE TABLE IF NOT EXISTS shears_schema (version INTEGER NOT NULL)");
  int64_t found = 0;
  if (st.ok()) {
    auto version = QueryInt(db, "SELECT COALESCE(MAX(version), 0) FROM shears_schema");
    st = version.status();
    if (st.ok()) found = *version;
  }
  if (st.ok()) st = NotNewer(found);
  for (const auto& [version, sql] : PostgresMigrations()) {
    if (st.ok() && version > found) st = db.Exec(sql);
  }
  if (st.ok() && found < kJobStoreSchemaVersion) {
    st = db.Exec(absl::StrCat("DELETE FROM shears_schema; INSERT INTO shears_schema (version) VALUES (",
                              kJobStoreSchemaVersion, ")"));
  }
  if (st.ok()) st = db.Exec("COMMIT");
  if (!st.ok()) db.Exec("ROLLBACK").IgnoreError();
  return st;
}

}  // namespace

absl::Status MigrateJobStore(sql::Database& database) {
  SHEARS_ASSIGN_OR_RETURN(sql::Session session, database.Acquire());
  return database.dialect() == sql::Dialect::kPostgres ? MigratePostgres(database, *session)
                                                       : MigrateSqlite(database, *session);
}

}  // namespace shears::server
