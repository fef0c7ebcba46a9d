#include "server/job_store.h"

#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/limits.h"
#include "common/proto_time.h"
#include "common/random_id.h"
#include "common/uri.h"
#include "common/status_macros.h"

namespace shears::server {
namespace {

// Version 1: jobs belong to a tenant, and request ids are unique within one.
// Version 2: ended jobs keep their end time in a column, for retention.
constexpr int kSchemaVersion = 2;
constexpr char kSchema[] = R"sql(
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

// A version 0 store (no tenants, request ids unique across the server) becomes version 1 with
// every job in the default tenant. SQLite cannot drop a column's UNIQUE, so the table is rebuilt.
constexpr char kMigrateFromVersion0[] = R"sql(
ALTER TABLE jobs RENAME TO jobs_v0;
DROP INDEX IF EXISTS jobs_by_state;
)sql";
constexpr char kCopyFromVersion0[] = R"sql(
INSERT INTO jobs (seq, id, tenant, request_id, state, job, lease_id, worker_id, lease_expire_ms, last_sequence)
  SELECT seq, id, 'default', request_id, state, job, lease_id, worker_id, lease_expire_ms, last_sequence FROM jobs_v0;
-- output_uri stays NULL for jobs that had ended; JobStore::Migrate fills it for the others.
DROP TABLE jobs_v0;
)sql";
// Version 1 to 2: the column before the schema's index on it; JobStore::Migrate fills it.
constexpr char kMigrateFromVersion1[] = "ALTER TABLE jobs ADD COLUMN end_ms INTEGER;";

std::string StateName(v1::JobState state) { return v1::JobState_Name(state); }

}  // namespace

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED || state == v1::JOB_STATE_CANCELLED;
}

struct JobStore::Row {
  int64_t seq = 0;
  v1::Job job;
  std::string lease_id;
  std::string worker_id;
  int64_t lease_expire_ms = 0;
  int64_t last_sequence = 0;
  int64_t last_batch = 0;  // of the current lease
};

JobStore::JobStore(std::unique_ptr<Database> db, StoreOptions options)
    : db_(std::move(db)), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& path, StoreOptions options) {
  if (options.max_attempts < 1) return absl::InvalidArgumentError("max_attempts must be at least 1");
  if (options.max_crashes < 1) return absl::InvalidArgumentError("max_crashes must be at least 1");
  if (options.lease_ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("lease_ttl must be positive");
  SHEARS_ASSIGN_OR_RETURN(auto db, Database::Open(path));
  std::unique_ptr<JobStore> store(new JobStore(std::move(db), std::move(options)));
  SHEARS_RETURN_IF_ERROR(store->Migrate());
  if (store->options_.max_db_bytes > 0) SHEARS_RETURN_IF_ERROR(store->LimitSize(store->options_.max_db_bytes));
  // Two TTLs: one for a worker's heartbeat interval (a third of it) and its reconnection (two
  // seconds at most between tries, common/channel.h), with room to spare.
  SHEARS_RETURN_IF_ERROR(store->GraceRunningLeases(store->options_.clock() + 2 * store->options_.lease_ttl));
  return store;
}

absl::Status JobStore::LimitSize(int64_t bytes) {
  absl::MutexLock lock(&mu_);
  Statement page_size(db_->get(), "PRAGMA page_size");
  SHEARS_ASSIGN_OR_RETURN(bool row, page_size.Step());
  if (!row || page_size.Int(0) <= 0) return absl::InternalError("sqlite: no page size");
  // SQLite keeps at least the pages it has; past the count, writes fail as on a full disk.
  return db_->Exec(absl::StrCat("PRAGMA max_page_count = ", std::max<int64_t>(1, bytes / page_size.Int(0))));
}

absl::Status JobStore::GraceRunningLeases(absl::Time until) {
  absl::MutexLock lock(&mu_);
  // The server was not there to take heartbeats; whether each worker still runs its job is for
  // its next heartbeat (every third of a TTL) to say.
  Statement q(db_->get(), "UPDATE jobs SET lease_expire_ms = MAX(lease_expire_ms, ?) WHERE state = ?");
  q.Bind(1, absl::ToUnixMillis(until)).Bind(2, int64_t{v1::JOB_STATE_RUNNING});
  return q.Run();
}

absl::Status JobStore::Migrate() {
  absl::MutexLock lock(&mu_);
  // WAL lets readers proceed during a write; FULL syncs every commit, so an acknowledged job survives
  // a power cut.
  SHEARS_RETURN_IF_ERROR(db_->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"));
  int64_t found = 0;
  bool has_jobs = false;
  {  // statements finalized before the schema changes
    Statement version(db_->get(), "PRAGMA user_version");
    SHEARS_ASSIGN_OR_RETURN(bool row, version.Step());
    if (row) found = version.Int(0);
    Statement tables(db_->get(), "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'jobs'");
    SHEARS_ASSIGN_OR_RETURN(row, tables.Step());
    has_jobs = row && tables.Int(0) > 0;
  }
  if (found > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("job store schema version ", found,
                                                      " is newer than this server's (", kSchemaVersion, ")"));
  }
  const bool version0 = found == 0 && has_jobs;
  const bool version1 = found == 1;
  SHEARS_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
  absl::Status st = version0 ? db_->Exec(kMigrateFromVersion0) : absl::OkStatus();
  if (st.ok() && version1) st = db_->Exec(kMigrateFromVersion1);
  if (st.ok()) st = db_->Exec(kSchema);
  if (st.ok() && version0) st = db_->Exec(kCopyFromVersion0);
  if (st.ok() && version0) st = FillOutputUris();
  if (st.ok() && (version0 || version1)) st = FillEndTimes();
  if (st.ok()) st = db_->Exec(absl::StrCat("PRAGMA user_version = ", kSchemaVersion));
  if (st.ok()) st = db_->Exec("COMMIT");
  if (!st.ok()) db_->Exec("ROLLBACK").IgnoreError();
  return st;
}

absl::Status JobStore::FillOutputUris() {
  std::vector<std::pair<std::string, std::string>> outputs;  // id, canonical output
  {
    Statement q(db_->get(), "SELECT id, job FROM jobs WHERE state IN (?, ?)");
    q.Bind(1, int64_t{v1::JOB_STATE_QUEUED}).Bind(2, int64_t{v1::JOB_STATE_RUNNING});
    for (;;) {
      SHEARS_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      v1::Job job;
      if (!job.ParseFromString(q.Text(1))) return absl::DataLossError(absl::StrCat("job ", q.Text(0), ": corrupt record"));
      outputs.emplace_back(q.Text(0), CanonicalUri(job.spec().output().uri()));
    }
  }
  for (const auto& [id, output] : outputs) {
    Statement update(db_->get(), "UPDATE jobs SET output_uri = ? WHERE id = ?");
    update.Bind(1, output).Bind(2, id);
    SHEARS_RETURN_IF_ERROR(update.Run());
  }
  return absl::OkStatus();
}

absl::Status JobStore::FillEndTimes() {
  std::vector<std::pair<std::string, int64_t>> ends;  // id, end time
  {
    Statement q(db_->get(), "SELECT id, job FROM jobs WHERE state IN (?, ?, ?)");
    q.Bind(1, int64_t{v1::JOB_STATE_SUCCEEDED}).Bind(2, int64_t{v1::JOB_STATE_FAILED}).Bind(3, int64_t{v1::JOB_STATE_CANCELLED});
    for (;;) {
      SHEARS_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      v1::Job job;
      if (!job.ParseFromString(q.Text(1))) return absl::DataLossError(absl::StrCat("job ", q.Text(0), ": corrupt record"));
      ends.emplace_back(q.Text(0), absl::ToUnixMillis(FromProtoTime(job.end_time())));
    }
  }
  for (const auto& [id, end] : ends) {
    Statement update(db_->get(), "UPDATE jobs SET end_ms = ? WHERE id = ?");
    update.Bind(1, end).Bind(2, id);
    SHEARS_RETURN_IF_ERROR(update.Run());
  }
  return absl::OkStatus();
}

void JobStore::AddListener(Listener listener) {
  absl::MutexLock lock(&listeners_mu_);
  listeners_.push_back(std::move(listener));
}

template <typename T, typename Body>
absl::StatusOr<T> JobStore::Transaction(Body body) {
  std::vector<Change> changes;
  absl::StatusOr<T> result;
  {
    absl::MutexLock lock(&mu_);
    changes_.clear();
    SHEARS_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
    result = body();
    if (result.ok()) {
      if (absl::Status st = db_->Exec("COMMIT"); !st.ok()) result = st;
    }
    if (!result.ok()) {
      db_->Exec("ROLLBACK").IgnoreError();
      changes_.clear();
    }
    changes.swap(changes_);
  }
  std::vector<Listener> listeners;
  {
    absl::MutexLock lock(&listeners_mu_);
    listeners = listeners_;
  }
  for (const auto& change : changes) {
    for (const auto& l : listeners) l(change);
  }
  return result;
}

absl::StatusOr<JobStore::Row> JobStore::LoadRow(const std::string& job_id) {
  Statement q(db_->get(),
              "SELECT seq, job, lease_id, worker_id, lease_expire_ms, last_sequence, tenant, last_batch FROM jobs "
              "WHERE id = ?");
  q.Bind(1, job_id);
  SHEARS_ASSIGN_OR_RETURN(bool found, q.Step());
  if (!found) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  Row row;
  row.seq = q.Int(0);
  if (!row.job.ParseFromString(q.Text(1))) return absl::DataLossError(absl::StrCat("job ", job_id, ": corrupt record"));
  row.lease_id = q.Text(2);
  row.worker_id = q.Text(3);
  row.lease_expire_ms = q.Int(4);
  row.last_sequence = q.Int(5);
  row.job.set_tenant(q.Text(6));  // the column rules: jobs migrated from version 0 have none in the record
  row.last_batch = q.Int(7);
  return row;
}

absl::Status JobStore::SaveRow(const Row& row) {
  Statement q(db_->get(),
              "UPDATE jobs SET state = ?, job = ?, lease_id = ?, worker_id = ?, lease_expire_ms = ?, "
              "last_sequence = ?, last_batch = ?, end_ms = ? WHERE id = ?");
  q.Bind(1, static_cast<int64_t>(row.job.state())).BindBlob(2, row.job.SerializeAsString());
  if (row.lease_id.empty()) {
    q.BindNull(3).BindNull(4).BindNull(5);
  } else {
    q.Bind(3, row.lease_id).Bind(4, row.worker_id).Bind(5, row.lease_expire_ms);
  }
  q.Bind(6, row.last_sequence).Bind(7, row.last_batch).Bind(9, row.job.id());
  if (IsTerminal(row.job.state())) {
    q.Bind(8, absl::ToUnixMillis(FromProtoTime(row.job.end_time())));
  } else {
    q.BindNull(8);
  }
  return q.Run();
}

absl::StatusOr<JobStore::Row> JobStore::LoadLeased(const std::string& job_id, const std::string& lease_id) {
  SHEARS_ASSIGN_OR_RETURN(Row row, LoadRow(job_id));
  if (row.job.state() != v1::JOB_STATE_RUNNING || row.lease_id != lease_id) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, ": lease ", lease_id,
                                                      " is not held (job is ", StateName(row.job.state()), ")"));
  }
  return row;
}

absl::Status JobStore::AppendEvent(Row& row, v1::JobEvent event) {
  event.set_job_id(row.job.id());
  event.set_sequence(++row.last_sequence);
  *event.mutable_time() = ToProtoTime(options_.clock());
  Statement q(db_->get(), "INSERT INTO events (job_id, sequence, event) VALUES (?, ?, ?)");
  q.Bind(1, row.job.id()).Bind(2, event.sequence()).BindBlob(3, event.SerializeAsString());
  return q.Run();
}

absl::Status JobStore::ChangeState(Row& row, v1::JobState state, const std::string& message) {
  const v1::JobState previous = row.job.state();
  const auto now = ToProtoTime(options_.clock());
  row.job.set_state(state);
  *row.job.mutable_update_time() = now;
  const bool first_lease = state == v1::JOB_STATE_RUNNING && !row.job.has_start_time();
  if (first_lease) *row.job.mutable_start_time() = now;
  if (state != v1::JOB_STATE_RUNNING) {
    row.lease_id.clear();
    row.worker_id.clear();
    row.lease_expire_ms = 0;
  }
  if (IsTerminal(state)) {
    *row.job.mutable_end_time() = now;
    if (state != v1::JOB_STATE_SUCCEEDED) row.job.set_error(message);
  }
  if (state == v1::JOB_STATE_QUEUED) {
    row.job.mutable_progress()->set_stage("queued");
    row.job.mutable_progress()->set_fraction(0);
  }
  changes_.push_back({row.job, previous, first_lease});
  v1::JobEvent event;
  event.mutable_state_change()->set_state(state);
  event.mutable_state_change()->set_message(message);
  return AppendEvent(row, std::move(event));
}

absl::StatusOr<JobStore::Created> JobStore::Create(const v1::JobSpec& spec, const std::string& request_id,
                                                   const std::string& tenant, const std::string& creator) {
  if (tenant.empty()) return absl::InvalidArgumentError("tenant: is required");
  return Transaction<Created>([&]() -> absl::StatusOr<Created> {
    if (!request_id.empty()) {
      Statement q(db_->get(), "SELECT id FROM jobs WHERE tenant = ? AND request_id = ?");
      q.Bind(1, tenant).Bind(2, request_id);
      SHEARS_ASSIGN_OR_RETURN(bool found, q.Step());
      if (found) {
        SHEARS_ASSIGN_OR_RETURN(Row existing, LoadRow(q.Text(0)));
        if (!google::protobuf::util::MessageDifferencer::Equals(existing.job.spec(), spec)) {
          return absl::AlreadyExistsError(absl::StrCat("request_id ", request_id, " already created job ",
                                                       existing.job.id(), " with a different spec"));
        }
        return Created{existing.job, false};
      }
    }
    if (options_.tenant_quota > 0) {
      Statement active(db_->get(), "SELECT COUNT(*) FROM jobs WHERE tenant = ? AND state IN (?, ?)");
      active.Bind(1, tenant).Bind(2, int64_t{v1::JOB_STATE_QUEUED}).Bind(3, int64_t{v1::JOB_STATE_RUNNING});
      SHEARS_ASSIGN_OR_RETURN(bool counted, active.Step());
      if (counted && active.Int(0) >= options_.tenant_quota) {
        return absl::ResourceExhaustedError(absl::StrCat("quota: tenant ", tenant, " has ", active.Int(0),
                                                         " queued or running jobs, as many as its quota (",
                                                         options_.tenant_quota, ") allows"));
      }
    }
    // Two jobs that have not ended may not write into each other's output; the transaction makes
    // the check and the insert one step, so two creations cannot both pass it.
    const std::string output = CanonicalUri(spec.output().uri());
    Statement active(db_->get(), "SELECT id, tenant, output_uri FROM jobs WHERE state IN (?, ?) AND output_uri IS NOT NULL");
    active.Bind(1, int64_t{v1::JOB_STATE_QUEUED}).Bind(2, int64_t{v1::JOB_STATE_RUNNING});
    for (;;) {
      SHEARS_ASSIGN_OR_RETURN(bool found, active.Step());
      if (!found) break;
      if (!UrisOverlap(output, active.Text(2))) continue;
      // Another tenant's job is named by nothing that would let its id be probed.
      const std::string whose = active.Text(1) == tenant ? absl::StrCat("job ", active.Text(0)) : "another tenant's job";
      return absl::FailedPreconditionError(absl::StrCat("spec.output.uri: ", output, " overlaps the output of ", whose,
                                                        ", which has not ended"));
    }
    Row row;
    row.job.set_id(RandomId());
    *row.job.mutable_spec() = spec;
    row.job.set_request_id(request_id);
    row.job.set_tenant(tenant);
    row.job.set_creator(creator);
    *row.job.mutable_create_time() = ToProtoTime(options_.clock());
    Statement insert(db_->get(),
                     "INSERT INTO jobs (id, tenant, request_id, state, job, output_uri) VALUES (?, ?, ?, ?, ?, ?)");
    insert.Bind(1, row.job.id()).Bind(2, tenant).Bind(6, output);
    if (request_id.empty()) {
      insert.BindNull(3);
    } else {
      insert.Bind(3, request_id);
    }
    insert.Bind(4, int64_t{v1::JOB_STATE_QUEUED}).BindBlob(5, row.job.SerializeAsString());
    SHEARS_RETURN_IF_ERROR(insert.Run());
    SHEARS_RETURN_IF_ERROR(ChangeState(row, v1::JOB_STATE_QUEUED, "job created"));
    SHEARS_RETURN_IF_ERROR(SaveRow(row));
    return Created{row.job, true};
  });
}

absl::StatusOr<v1::Job> JobStore::Get(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  SHEARS_ASSIGN_OR_RETURN(Row row, LoadRow(job_id));
  return row.job;
}

absl::StatusOr<JobStore::Page> JobStore::List(v1::JobState state, int page_size, const std::string& page_token,
                                              const std::string& tenant) {
  int64_t after = 0;
  if (!page_token.empty()) {
    std::string decoded;
    if (!absl::WebSafeBase64Unescape(page_token, &decoded) || decoded.rfind("seq:", 0) != 0 ||
        !absl::SimpleAtoi(decoded.substr(4), &after)) {
      return absl::InvalidArgumentError("page_token: not a token this server issued");
    }
  }
  absl::MutexLock lock(&mu_);
  Statement q(db_->get(),
              "SELECT seq, job, tenant FROM jobs WHERE seq > ? AND (? = 0 OR state = ?) AND (? = '' OR tenant = ?) "
              "ORDER BY seq LIMIT ?");
  q.Bind(1, after).Bind(2, int64_t{state}).Bind(3, int64_t{state}).Bind(4, tenant).Bind(5, tenant);
  q.Bind(6, int64_t{page_size} + 1);
  Page page;
  int64_t last_seq = 0;
  size_t bytes = 0;
  for (;;) {
    SHEARS_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    if (static_cast<int>(page.jobs.size()) == page_size) {
      page.next_page_token = absl::WebSafeBase64Escape(absl::StrCat("seq:", last_seq));
      break;
    }
    v1::Job job;
    if (!job.ParseFromString(q.Text(1))) return absl::DataLossError("corrupt job record");
    job.set_tenant(q.Text(2));
    // Summaries: the per-layer and per-block lists stay with GetJob.
    job.mutable_result()->clear_layers();
    job.mutable_result()->clear_redundancy();
    if (!job.result().ByteSizeLong()) job.clear_result();
    bytes += job.ByteSizeLong();
    if (bytes > kMaxListPageBytes && !page.jobs.empty()) {
      page.next_page_token = absl::WebSafeBase64Escape(absl::StrCat("seq:", last_seq));
      break;
    }
    last_seq = q.Int(0);
    page.jobs.push_back(std::move(job));
  }
  return page;
}

absl::StatusOr<v1::Job> JobStore::Cancel(const std::string& job_id) {
  return Transaction<v1::Job>([&]() -> absl::StatusOr<v1::Job> {
    SHEARS_ASSIGN_OR_RETURN(Row row, LoadRow(job_id));
    switch (row.job.state()) {
      case v1::JOB_STATE_QUEUED:
        SHEARS_RETURN_IF_ERROR(ChangeState(row, v1::JOB_STATE_CANCELLED, "cancelled while queued"));
        break;
      case v1::JOB_STATE_RUNNING:
        if (row.job.cancel_requested()) return row.job;
        row.job.set_cancel_requested(true);
        SHEARS_RETURN_IF_ERROR(ChangeState(row, v1::JOB_STATE_RUNNING, "cancellation requested; the worker stops at its next heartbeat"));
        break;
      default:
        return absl::FailedPreconditionError(
            absl::StrCat("job ", job_id, " already ended (", StateName(row.job.state()), ")"));
    }
    SHEARS_RETURN_IF_ERROR(SaveRow(row));
    return row.job;
  });
}

absl::StatusOr<std::optional<JobStore::Lease>> JobStore::LeaseNext(const std::string& worker_id) {
  return Transaction<std::optional<Lease>>([&]() -> absl::StatusOr<std::optional<Lease>> {
    Statement q(db_->get(), "SELECT id FROM jobs WHERE state = ? ORDER BY seq LIMIT 1");
    q.Bind(1, int64_t{v1::JOB_STATE_QUEUED});
    SHEARS_ASSIGN_OR_RETURN(bool found, q.Step());
    if (!found) return std::optional<Lease>();
    SHEARS_ASSIGN_OR_RETURN(Row row, LoadRow(q.Text(0)));
    row.job.set_attempt_count(row.job.attempt_count() + 1);
    SHEARS_RETURN_IF_ERROR(ChangeState(
        row, v1::JOB_STATE_RUNNING,
        absl::StrCat("attempt ", row.job.attempt_count(), " of ", options_.max_attempts, " on worker ", worker_id)));
    row.lease_id = RandomId();
    row.last_batch = 0;  // the new lease numbers its batches from 1
    row.worker_id = worker_id;
    row.lease_expire_ms = absl::ToUnixMillis(options_.clock() + options_.lease_ttl);
    SHEARS_RETURN_IF_ERROR(SaveRow(row));
    return std::optional<Lease>(Lease{row.job, row.lease_id});
  });
}

absl::StatusOr<bool> JobStore::Heartbeat(const std::string& job_id, const std::string& lease_id) {
  return Transaction<bool>([&]() -> absl::StatusOr<bool> {
    SHEARS_ASSIGN_OR_RETURN(Row row, LoadLeased(job_id, lease_id));
    row.lease_expire_ms = absl::ToUnixMillis(options_.clock() + options_.lease_ttl);
    SHEARS_RETURN_IF_ERROR(SaveRow(row));
    return row.job.cancel_requested();
  });
}

absl::StatusOr<int64_t> JobStore::AppendEvents(const std::string& job_id, const std::string& lease_id,
                                               const std::vector<v1::JobEvent>& events, int64_t batch) {
  return Transaction<int64_t>([&]() -> absl::StatusOr<int64_t> {
    SHEARS_ASSIGN_OR_RETURN(Row row, LoadLeased(job_id, lease_id));
    if (batch > 0 && batch <= row.last_batch) return row.last_sequence;  // applied already
    if (row.last_sequence + static_cast<int64_t>(events.size()) > kMaxEventsPerJob) {
      return absl::ResourceExhaustedError(absl::StrCat("events: job ", job_id, " has ", row.last_sequence,
                                                       " events; a job keeps at most ", kMaxEventsPerJob));
    }
    if (batch > row.last_batch + 1) {
      v1::JobEvent gap;
      gap.mutable_report_gap()->set_first_batch(row.last_batch + 1);
      gap.mutable_report_gap()->set_last_batch(batch - 1);
      SHEARS_RETURN_IF_ERROR(AppendEvent(row, std::move(gap)));
    }
    if (batch > 0) row.last_batch = batch;
    for (const auto& event : events) {
      if (event.has_state_change() || event.has_report_gap()) {
        return absl::InvalidArgumentError("events: workers report progress and layers, not state changes or gaps");
      }
      if (event.has_progress()) *row.job.mutable_progress() = event.progress();
      SHEARS_RETURN_IF_ERROR(AppendEvent(row, event));
    }
    *row.job.mutable_update_time() = ToProtoTime(options_.clock());
    changes_.push_back({row.job, row.job.state()});
    SHEARS_RETURN_IF_ERROR(SaveRow(row));
    return row.last_sequence;
  });
}

absl::Status JobStore::Complete(const v1::CompleteJobRequest& request) {
  return Transaction<bool>([&]() -> absl::StatusOr<bool> {
           SHEARS_ASSIGN_OR_RETURN(Row row, LoadLeased(request.job_id(), request.lease_id()));
           switch (request.outcome_case()) {
             case v1::CompleteJobRequest::kResult:
               *row.job.mutable_result() = request.result();
               row.job.mutable_progress()->set_stage("done");
               row.job.mutable_progress()->set_fraction(1.0);
               SHEARS_RETURN_IF_ERROR(ChangeState(row, v1::JOB_STATE_SUCCEEDED, "succeeded"));
               break;
             case v1::CompleteJobRequest::kError:
               SHEARS_RETURN_IF_ERROR(ChangeState(row, v1::JOB_STATE_FAILED, request.error()));
               break;
             case v1::CompleteJobRequest::kCancelled:
               SHEARS_RETURN_IF_ERROR(ChangeState(row, v1::JOB_STATE_CANCELLED, "cancelled by request"));
               break;
             case v1::CompleteJobRequest::kCrash: {
               // A poison job (one that aborts LibTorch, or needs more memory than a worker has)
               // reaches at most max_crashes workers.
               row.job.set_crash_count(row.job.crash_count() + 1);
               const std::string why = absl::StrCat("attempt ", row.job.attempt_count(), " crashed (crash ",
                                                    row.job.crash_count(), " of at most ", options_.max_crashes,
                                                    ") on worker ", row.worker_id, ": ", request.crash());
               v1::JobState next = v1::JOB_STATE_QUEUED;
               if (row.job.cancel_requested()) {
                 next = v1::JOB_STATE_CANCELLED;
               } else if (row.job.crash_count() >= options_.max_crashes ||
                          row.job.attempt_count() >= options_.max_attempts) {
                 next = v1::JOB_STATE_FAILED;
               }
               SHEARS_RETURN_IF_ERROR(ChangeState(row, next, why));
               break;
             }
             default:
               return absl::InvalidArgumentError("outcome: one of result, error, cancelled or crash is required");
           }
           SHEARS_RETURN_IF_ERROR(SaveRow(row));
           return true;
         })
      .status();
}

absl::Status JobStore::Release(const std::string& job_id, const std::string& lease_id, const std::string& why) {
  return Transaction<bool>([&]() -> absl::StatusOr<bool> {
           SHEARS_ASSIGN_OR_RETURN(Row row, LoadLeased(job_id, lease_id));
           const std::string worker = row.worker_id;
           row.job.set_attempt_count(row.job.attempt_count() - 1);
           if (row.job.cancel_requested()) {
             SHEARS_RETURN_IF_ERROR(ChangeState(row, v1::JOB_STATE_CANCELLED, "cancelled; worker shut down"));
           } else {
             SHEARS_RETURN_IF_ERROR(
                 ChangeState(row, v1::JOB_STATE_QUEUED,
                             why.empty() ? absl::StrCat("worker ", worker, " shut down and gave the job back") : why));
           }
           SHEARS_RETURN_IF_ERROR(SaveRow(row));
           return true;
         })
      .status();
}

absl::StatusOr<int> JobStore::ExpireLeases() {
  return Transaction<int>([&]() -> absl::StatusOr<int> {
    Statement q(db_->get(), "SELECT id FROM jobs WHERE state = ? AND lease_expire_ms < ?");
    q.Bind(1, int64_t{v1::JOB_STATE_RUNNING}).Bind(2, absl::ToUnixMillis(options_.clock()));
    std::vector<std::string> expired;
    for (;;) {
      SHEARS_ASSIGN_OR_RETURN(bool found, q.Step());
      if (!found) break;
      expired.push_back(q.Text(0));
    }
    for (const auto& id : expired) {
      SHEARS_ASSIGN_OR_RETURN(Row row, LoadRow(id));
      const std::string why = absl::StrCat("lease expired on attempt ", row.job.attempt_count(), " of ",
                                           options_.max_attempts, " (worker ", row.worker_id, " stopped heartbeating)");
      v1::JobState next = v1::JOB_STATE_QUEUED;
      if (row.job.cancel_requested()) {
        next = v1::JOB_STATE_CANCELLED;
      } else if (row.job.attempt_count() >= options_.max_attempts) {
        next = v1::JOB_STATE_FAILED;
      }
      SHEARS_RETURN_IF_ERROR(ChangeState(row, next, why));
      SHEARS_RETURN_IF_ERROR(SaveRow(row));
    }
    return static_cast<int>(expired.size());
  });
}

absl::StatusOr<int> JobStore::DeleteEndedBefore(absl::Time cutoff, int limit) {
  return Transaction<int>([&]() -> absl::StatusOr<int> {
    std::vector<std::string> ids;
    {
      Statement q(db_->get(), "SELECT id FROM jobs WHERE end_ms IS NOT NULL AND end_ms < ? ORDER BY end_ms LIMIT ?");
      q.Bind(1, absl::ToUnixMillis(cutoff)).Bind(2, int64_t{limit});
      for (;;) {
        SHEARS_ASSIGN_OR_RETURN(bool found, q.Step());
        if (!found) break;
        ids.push_back(q.Text(0));
      }
    }
    for (const auto& id : ids) {
      Statement events(db_->get(), "DELETE FROM events WHERE job_id = ?");
      events.Bind(1, id);
      SHEARS_RETURN_IF_ERROR(events.Run());
      Statement job(db_->get(), "DELETE FROM jobs WHERE id = ?");
      job.Bind(1, id);
      SHEARS_RETURN_IF_ERROR(job.Run());
    }
    return static_cast<int>(ids.size());
  });
}

absl::StatusOr<std::vector<v1::JobEvent>> JobStore::EventsAfter(const std::string& job_id, int64_t after_sequence,
                                                                int limit) {
  absl::MutexLock lock(&mu_);
  Statement q(db_->get(), "SELECT event FROM events WHERE job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?");
  q.Bind(1, job_id).Bind(2, after_sequence).Bind(3, int64_t{limit});
  std::vector<v1::JobEvent> out;
  for (;;) {
    SHEARS_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    if (!out.emplace_back().ParseFromString(q.Text(0))) return absl::DataLossError("corrupt event record");
  }
  return out;
}

absl::StatusOr<JobStore::Census> JobStore::TakeCensus() {
  absl::MutexLock lock(&mu_);
  Census census;
  Statement by_state(db_->get(), "SELECT state, COUNT(*) FROM jobs GROUP BY state");
  for (;;) {
    SHEARS_ASSIGN_OR_RETURN(bool row, by_state.Step());
    if (!row) break;
    census.jobs[static_cast<v1::JobState>(by_state.Int(0))] = by_state.Int(1);
  }
  Statement workers(db_->get(), "SELECT COUNT(DISTINCT worker_id) FROM jobs WHERE state = ?");
  workers.Bind(1, int64_t{v1::JOB_STATE_RUNNING});
  SHEARS_ASSIGN_OR_RETURN(bool found, workers.Step());
  if (found) census.busy_workers = workers.Int(0);
  return census;
}

}  // namespace shears::server
