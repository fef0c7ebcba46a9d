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
#include "absl/strings/str_split.h"
#include "server/job_store_schema.h"

namespace shears::server {
namespace {

std::string StateName(v1::JobState state) { return v1::JobState_Name(state); }

// The PostgreSQL advisory lock that creations take turns on ("create" in ASCII).
constexpr int64_t kCreationLock = 0x637265617465;

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

struct JobStore::Tx {
  sql::Connection& db;
  // Appended to the SELECT that loads a row a write transaction changes. PostgreSQL's transactions
  // run side by side, so each locks the rows it changes until it commits (and waits for a row
  // another holds); SQLite's write transactions take turns (BEGIN IMMEDIATE) and need nothing.
  std::string lock_row;
  // For a SELECT that picks rows to change (the next queued job, expired leases): rows another
  // replica's transaction holds are skipped, not waited for.
  std::string take_rows;
  std::vector<Change> changes;
};

JobStore::JobStore(std::unique_ptr<sql::Database> db, StoreOptions options)
    : db_(std::move(db)), options_(std::move(options)), replica_id_(RandomId()) {}

JobStore::~JobStore() {
  RemoveListeners();
  db_.reset();  // stops its listening thread before the members it calls die
}

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& url, StoreOptions options) {
  if (options.max_attempts < 1) return absl::InvalidArgumentError("max_attempts must be at least 1");
  if (options.max_crashes < 1) return absl::InvalidArgumentError("max_crashes must be at least 1");
  if (options.lease_ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("lease_ttl must be positive");
  SHEARS_ASSIGN_OR_RETURN(auto db, sql::Database::Open(url, options.database));
  if (options.max_db_bytes > 0 && db->dialect() != sql::Dialect::kSqlite) {
    return absl::InvalidArgumentError(
        "--max-db-bytes: bounds a SQLite store only; bound a PostgreSQL database with its server's disk");
  }
  SHEARS_RETURN_IF_ERROR(MigrateJobStore(*db));
  std::unique_ptr<JobStore> store(new JobStore(std::move(db), std::move(options)));
  if (store->options_.max_db_bytes > 0) SHEARS_RETURN_IF_ERROR(store->LimitSize(store->options_.max_db_bytes));
  // Two TTLs: one for a worker's heartbeat interval (a third of it) and its reconnection (two
  // seconds at most between tries, common/channel.h), with room to spare.
  SHEARS_RETURN_IF_ERROR(store->GraceRunningLeases(store->options_.clock() + 2 * store->options_.lease_ttl));
  store->db_->Listen([s = store.get()](const std::string& payload) { s->Heard(payload); });
  return store;
}

absl::Status JobStore::LimitSize(int64_t bytes) {
  return Read<bool>([&](Tx& tx) -> absl::StatusOr<bool> {
           auto page_size = tx.db.Prepare("PRAGMA page_size");
           SHEARS_ASSIGN_OR_RETURN(bool row, page_size->Step());
           if (!row || page_size->Int(0) <= 0) return absl::InternalError("sqlite: no page size");
           // SQLite keeps at least the pages it has; past the count, writes fail as on a full disk.
           SHEARS_RETURN_IF_ERROR(
               tx.db.Exec(absl::StrCat("PRAGMA max_page_count = ", std::max<int64_t>(1, bytes / page_size->Int(0)))));
           return true;
         })
      .status();
}

absl::Status JobStore::GraceRunningLeases(absl::Time until) {
  // The server was not there to take heartbeats; whether each worker still runs its job is for
  // its next heartbeat (every third of a TTL) to say. With several replicas, one that restarts
  // grants the grace again: a lease may outlive its worker by two TTLs more.
  return Transaction<bool>([&](Tx& tx) -> absl::StatusOr<bool> {
           auto q = tx.db.Prepare("UPDATE jobs SET lease_expire_ms = ? WHERE state = ? AND lease_expire_ms < ?");
           q->Bind(1, absl::ToUnixMillis(until)).Bind(2, int64_t{v1::JOB_STATE_RUNNING}).Bind(3, absl::ToUnixMillis(until));
           SHEARS_RETURN_IF_ERROR(q->Run());
           return true;
         })
      .status();
}

void JobStore::AddListener(Listener listener) {
  absl::MutexLock lock(&listeners_mu_);
  listeners_.push_back(std::move(listener));
}

void JobStore::RemoveListeners() {
  absl::MutexLock lock(&listeners_mu_);
  listeners_.clear();
}

void JobStore::Tell(const std::vector<Change>& changes) {
  // Held while the listeners run, so that RemoveListeners waits for the last call to finish.
  absl::MutexLock lock(&listeners_mu_);
  for (const auto& change : changes) {
    for (const auto& l : listeners_) l(change);
  }
}

void JobStore::Heard(const std::string& payload) {
  Change change;
  change.remote = true;
  if (!payload.empty()) {  // "<replica> <job id> <state>"
    std::vector<std::string> parts = absl::StrSplit(payload, ' ');
    int state = 0;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[2], &state)) return;
    if (parts[0] == replica_id_) return;  // told already, as it committed
    change.job.set_id(parts[1]);
    change.job.set_state(static_cast<v1::JobState>(state));
  }
  Tell({change});
}

template <typename T, typename Body>
absl::StatusOr<T> JobStore::Transaction(Body body) {
  std::vector<Change> changes;
  absl::StatusOr<T> result;
  // A connection found lost at BEGIN did nothing yet: the transaction runs again on a new one (the
  // database closed the other idle ones meanwhile), so a database restart is no caller's error.
  for (int attempt = 0;; ++attempt) {
    SHEARS_ASSIGN_OR_RETURN(sql::Session session, db_->Acquire());
    const bool postgres = db_->dialect() == sql::Dialect::kPostgres;
    Tx tx{*session, postgres ? " FOR UPDATE" : "", postgres ? " FOR UPDATE SKIP LOCKED" : "", {}};
    if (absl::Status begun = db_->BeginWrite(*session); !begun.ok()) {
      if (attempt == 0 && session->Lost()) continue;
      return begun;
    }
    result = body(tx);
    for (const auto& change : tx.changes) {
      if (!result.ok()) break;
      // Other replicas hear of it once it commits (and not at all if it does not).
      if (absl::Status st = db_->Announce(
              *session, absl::StrCat(replica_id_, " ", change.job.id(), " ", static_cast<int>(change.job.state())));
          !st.ok()) {
        result = st;
      }
    }
    if (result.ok()) {
      if (absl::Status st = session->Exec("COMMIT"); !st.ok()) result = st;
    }
    if (!result.ok()) {
      session->Exec("ROLLBACK").IgnoreError();
    } else {
      changes.swap(tx.changes);
    }
    break;
  }
  Tell(changes);
  return result;
}

template <typename T, typename Body>
absl::StatusOr<T> JobStore::Read(Body body) {
  for (int attempt = 0;; ++attempt) {
    SHEARS_ASSIGN_OR_RETURN(sql::Session session, db_->Acquire());
    Tx tx{*session, "", "", {}};
    absl::StatusOr<T> result = body(tx);
    // A read changes nothing: one lost connection is retried on a new one.
    if (!result.ok() && attempt == 0 && session->Lost()) continue;
    return result;
  }
}

absl::StatusOr<JobStore::Row> JobStore::LoadRow(Tx& tx, const std::string& job_id) {
  auto q = tx.db.Prepare(absl::StrCat(
      "SELECT seq, job, lease_id, worker_id, lease_expire_ms, last_sequence, tenant, last_batch FROM jobs WHERE id = ?",
      tx.lock_row));
  q->Bind(1, job_id);
  SHEARS_ASSIGN_OR_RETURN(bool found, q->Step());
  if (!found) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  Row row;
  row.seq = q->Int(0);
  if (!row.job.ParseFromString(q->Text(1))) return absl::DataLossError(absl::StrCat("job ", job_id, ": corrupt record"));
  row.lease_id = q->Text(2);
  row.worker_id = q->Text(3);
  row.lease_expire_ms = q->Int(4);
  row.last_sequence = q->Int(5);
  row.job.set_tenant(q->Text(6));  // the column rules: jobs migrated from version 0 have none in the record
  row.last_batch = q->Int(7);
  return row;
}

absl::Status JobStore::SaveRow(Tx& tx, const Row& row) {
  auto q = tx.db.Prepare("UPDATE jobs SET state = ?, job = ?, lease_id = ?, worker_id = ?, lease_expire_ms = ?, "
              "last_sequence = ?, last_batch = ?, end_ms = ? WHERE id = ?");
  q->Bind(1, static_cast<int64_t>(row.job.state())).BindBlob(2, row.job.SerializeAsString());
  if (row.lease_id.empty()) {
    q->BindNull(3).BindNull(4).BindNull(5);
  } else {
    q->Bind(3, row.lease_id).Bind(4, row.worker_id).Bind(5, row.lease_expire_ms);
  }
  q->Bind(6, row.last_sequence).Bind(7, row.last_batch).Bind(9, row.job.id());
  if (IsTerminal(row.job.state())) {
    q->Bind(8, absl::ToUnixMillis(FromProtoTime(row.job.end_time())));
  } else {
    q->BindNull(8);
  }
  return q->Run();
}

absl::StatusOr<JobStore::Row> JobStore::LoadLeased(Tx& tx, const std::string& job_id, const std::string& lease_id) {
  SHEARS_ASSIGN_OR_RETURN(Row row, LoadRow(tx, job_id));
  if (row.job.state() != v1::JOB_STATE_RUNNING || row.lease_id != lease_id) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, ": lease ", lease_id,
                                                      " is not held (job is ", StateName(row.job.state()), ")"));
  }
  return row;
}

absl::Status JobStore::AppendEvent(Tx& tx, Row& row, v1::JobEvent event) {
  event.set_job_id(row.job.id());
  event.set_sequence(++row.last_sequence);
  *event.mutable_time() = ToProtoTime(options_.clock());
  auto q = tx.db.Prepare("INSERT INTO events (job_id, sequence, event) VALUES (?, ?, ?)");
  q->Bind(1, row.job.id()).Bind(2, event.sequence()).BindBlob(3, event.SerializeAsString());
  return q->Run();
}

absl::Status JobStore::ChangeState(Tx& tx, Row& row, v1::JobState state, const std::string& message) {
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
  tx.changes.push_back({row.job, previous, first_lease});
  v1::JobEvent event;
  event.mutable_state_change()->set_state(state);
  event.mutable_state_change()->set_message(message);
  return AppendEvent(tx, row, std::move(event));
}

absl::StatusOr<JobStore::Created> JobStore::Create(const v1::JobSpec& spec, const std::string& request_id,
                                                   const std::string& tenant, const std::string& creator) {
  if (tenant.empty()) return absl::InvalidArgumentError("tenant: is required");
  return Transaction<Created>([&](Tx& tx) -> absl::StatusOr<Created> {
    // The checks below (request id, quota, overlapping outputs) read rows that no lock covers: on
    // PostgreSQL, creations take turns on an advisory lock so that two replicas cannot both pass
    // them. SQLite's transactions take turns anyway.
    if (db_->dialect() == sql::Dialect::kPostgres) {
      SHEARS_RETURN_IF_ERROR(tx.db.Exec(absl::StrCat("SELECT pg_advisory_xact_lock(", kCreationLock, ")")));
    }
    if (!request_id.empty()) {
      auto q = tx.db.Prepare("SELECT id FROM jobs WHERE tenant = ? AND request_id = ?");
      q->Bind(1, tenant).Bind(2, request_id);
      SHEARS_ASSIGN_OR_RETURN(bool found, q->Step());
      if (found) {
        SHEARS_ASSIGN_OR_RETURN(Row existing, LoadRow(tx, q->Text(0)));
        if (!google::protobuf::util::MessageDifferencer::Equals(existing.job.spec(), spec)) {
          return absl::AlreadyExistsError(absl::StrCat("request_id ", request_id, " already created job ",
                                                       existing.job.id(), " with a different spec"));
        }
        return Created{existing.job, false};
      }
    }
    if (options_.tenant_quota > 0) {
      auto active = tx.db.Prepare("SELECT COUNT(*) FROM jobs WHERE tenant = ? AND state IN (?, ?)");
      active->Bind(1, tenant).Bind(2, int64_t{v1::JOB_STATE_QUEUED}).Bind(3, int64_t{v1::JOB_STATE_RUNNING});
      SHEARS_ASSIGN_OR_RETURN(bool counted, active->Step());
      if (counted && active->Int(0) >= options_.tenant_quota) {
        return absl::ResourceExhaustedError(absl::StrCat("quota: tenant ", tenant, " has ", active->Int(0),
                                                         " queued or running jobs, as many as its quota (",
                                                         options_.tenant_quota, ") allows"));
      }
    }
    // Two jobs that have not ended may not write into each other's output; the transaction makes
    // the check and the insert one step, so two creations cannot both pass it.
    const std::string output = CanonicalUri(spec.output().uri());
    auto active = tx.db.Prepare("SELECT id, tenant, output_uri FROM jobs WHERE state IN (?, ?) AND output_uri IS NOT NULL");
    active->Bind(1, int64_t{v1::JOB_STATE_QUEUED}).Bind(2, int64_t{v1::JOB_STATE_RUNNING});
    for (;;) {
      SHEARS_ASSIGN_OR_RETURN(bool found, active->Step());
      if (!found) break;
      if (!UrisOverlap(output, active->Text(2))) continue;
      // Another tenant's job is named by nothing that would let its id be probed.
      const std::string whose = active->Text(1) == tenant ? absl::StrCat("job ", active->Text(0)) : "another tenant's job";
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
    auto insert = tx.db.Prepare("INSERT INTO jobs (id, tenant, request_id, state, job, output_uri) VALUES (?, ?, ?, ?, ?, ?)");
    insert->Bind(1, row.job.id()).Bind(2, tenant).Bind(6, output);
    if (request_id.empty()) {
      insert->BindNull(3);
    } else {
      insert->Bind(3, request_id);
    }
    insert->Bind(4, int64_t{v1::JOB_STATE_QUEUED}).BindBlob(5, row.job.SerializeAsString());
    SHEARS_RETURN_IF_ERROR(insert->Run());
    SHEARS_RETURN_IF_ERROR(ChangeState(tx, row, v1::JOB_STATE_QUEUED, "job created"));
    SHEARS_RETURN_IF_ERROR(SaveRow(tx, row));
    return Created{row.job, true};
  });
}

absl::StatusOr<v1::Job> JobStore::Get(const std::string& job_id) {
  return Read<v1::Job>([&](Tx& tx) -> absl::StatusOr<v1::Job> {
    SHEARS_ASSIGN_OR_RETURN(Row row, LoadRow(tx, job_id));
    return row.job;
  });
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
  return Read<Page>([&](Tx& tx) -> absl::StatusOr<Page> {
    // The casts type the parameters compared with constants, which PostgreSQL cannot infer.
    auto q = tx.db.Prepare(
        "SELECT seq, job, tenant FROM jobs WHERE seq > ? AND (CAST(? AS INTEGER) = 0 OR state = ?) "
        "AND (CAST(? AS TEXT) = '' OR tenant = ?) ORDER BY seq LIMIT ?");
    q->Bind(1, after).Bind(2, int64_t{state}).Bind(3, int64_t{state}).Bind(4, tenant).Bind(5, tenant);
    q->Bind(6, int64_t{page_size} + 1);
    Page page;
    int64_t last_seq = 0;
    size_t bytes = 0;
    for (;;) {
      SHEARS_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      if (static_cast<int>(page.jobs.size()) == page_size) {
        page.next_page_token = absl::WebSafeBase64Escape(absl::StrCat("seq:", last_seq));
        break;
      }
      v1::Job job;
      if (!job.ParseFromString(q->Text(1))) return absl::DataLossError("corrupt job record");
      job.set_tenant(q->Text(2));
      // Summaries: the per-layer and per-block lists stay with GetJob.
      job.mutable_result()->clear_layers();
      job.mutable_result()->clear_redundancy();
      if (!job.result().ByteSizeLong()) job.clear_result();
      bytes += job.ByteSizeLong();
      if (bytes > kMaxListPageBytes && !page.jobs.empty()) {
        page.next_page_token = absl::WebSafeBase64Escape(absl::StrCat("seq:", last_seq));
        break;
      }
      last_seq = q->Int(0);
      page.jobs.push_back(std::move(job));
    }
    return page;
  });
}

absl::StatusOr<v1::Job> JobStore::Cancel(const std::string& job_id) {
  return Transaction<v1::Job>([&](Tx& tx) -> absl::StatusOr<v1::Job> {
    SHEARS_ASSIGN_OR_RETURN(Row row, LoadRow(tx, job_id));
    switch (row.job.state()) {
      case v1::JOB_STATE_QUEUED:
        SHEARS_RETURN_IF_ERROR(ChangeState(tx, row, v1::JOB_STATE_CANCELLED, "cancelled while queued"));
        break;
      case v1::JOB_STATE_RUNNING:
        if (row.job.cancel_requested()) return row.job;
        row.job.set_cancel_requested(true);
        SHEARS_RETURN_IF_ERROR(ChangeState(tx, row, v1::JOB_STATE_RUNNING, "cancellation requested; the worker stops at its next heartbeat"));
        break;
      default:
        return absl::FailedPreconditionError(
            absl::StrCat("job ", job_id, " already ended (", StateName(row.job.state()), ")"));
    }
    SHEARS_RETURN_IF_ERROR(SaveRow(tx, row));
    return row.job;
  });
}

absl::StatusOr<std::optional<JobStore::Lease>> JobStore::LeaseNext(const std::string& worker_id) {
  return Transaction<std::optional<Lease>>([&](Tx& tx) -> absl::StatusOr<std::optional<Lease>> {
    auto q = tx.db.Prepare(absl::StrCat("SELECT id FROM jobs WHERE state = ? ORDER BY seq LIMIT 1", tx.take_rows));
    q->Bind(1, int64_t{v1::JOB_STATE_QUEUED});
    SHEARS_ASSIGN_OR_RETURN(bool found, q->Step());
    if (!found) return std::optional<Lease>();
    SHEARS_ASSIGN_OR_RETURN(Row row, LoadRow(tx, q->Text(0)));
    row.job.set_attempt_count(row.job.attempt_count() + 1);
    SHEARS_RETURN_IF_ERROR(ChangeState(tx, 
        row, v1::JOB_STATE_RUNNING,
        absl::StrCat("attempt ", row.job.attempt_count(), " of ", options_.max_attempts, " on worker ", worker_id)));
    row.lease_id = RandomId();
    row.last_batch = 0;  // the new lease numbers its batches from 1
    row.worker_id = worker_id;
    row.lease_expire_ms = absl::ToUnixMillis(options_.clock() + options_.lease_ttl);
    SHEARS_RETURN_IF_ERROR(SaveRow(tx, row));
    return std::optional<Lease>(Lease{row.job, row.lease_id});
  });
}

absl::StatusOr<bool> JobStore::Heartbeat(const std::string& job_id, const std::string& lease_id) {
  return Transaction<bool>([&](Tx& tx) -> absl::StatusOr<bool> {
    SHEARS_ASSIGN_OR_RETURN(Row row, LoadLeased(tx, job_id, lease_id));
    row.lease_expire_ms = absl::ToUnixMillis(options_.clock() + options_.lease_ttl);
    SHEARS_RETURN_IF_ERROR(SaveRow(tx, row));
    return row.job.cancel_requested();
  });
}

absl::StatusOr<int64_t> JobStore::AppendEvents(const std::string& job_id, const std::string& lease_id,
                                               const std::vector<v1::JobEvent>& events, int64_t batch) {
  return Transaction<int64_t>([&](Tx& tx) -> absl::StatusOr<int64_t> {
    SHEARS_ASSIGN_OR_RETURN(Row row, LoadLeased(tx, job_id, lease_id));
    if (batch > 0 && batch <= row.last_batch) return row.last_sequence;  // applied already
    if (row.last_sequence + static_cast<int64_t>(events.size()) > kMaxEventsPerJob) {
      return absl::ResourceExhaustedError(absl::StrCat("events: job ", job_id, " has ", row.last_sequence,
                                                       " events; a job keeps at most ", kMaxEventsPerJob));
    }
    if (batch > row.last_batch + 1) {
      v1::JobEvent gap;
      gap.mutable_report_gap()->set_first_batch(row.last_batch + 1);
      gap.mutable_report_gap()->set_last_batch(batch - 1);
      SHEARS_RETURN_IF_ERROR(AppendEvent(tx, row, std::move(gap)));
    }
    if (batch > 0) row.last_batch = batch;
    for (const auto& event : events) {
      if (event.has_state_change() || event.has_report_gap()) {
        return absl::InvalidArgumentError("events: workers report progress and layers, not state changes or gaps");
      }
      if (event.has_progress()) *row.job.mutable_progress() = event.progress();
      SHEARS_RETURN_IF_ERROR(AppendEvent(tx, row, event));
    }
    *row.job.mutable_update_time() = ToProtoTime(options_.clock());
    tx.changes.push_back({row.job, row.job.state()});
    SHEARS_RETURN_IF_ERROR(SaveRow(tx, row));
    return row.last_sequence;
  });
}

absl::Status JobStore::Complete(const v1::CompleteJobRequest& request) {
  return Transaction<bool>([&](Tx& tx) -> absl::StatusOr<bool> {
           SHEARS_ASSIGN_OR_RETURN(Row row, LoadLeased(tx, request.job_id(), request.lease_id()));
           switch (request.outcome_case()) {
             case v1::CompleteJobRequest::kResult:
               *row.job.mutable_result() = request.result();
               row.job.mutable_progress()->set_stage("done");
               row.job.mutable_progress()->set_fraction(1.0);
               SHEARS_RETURN_IF_ERROR(ChangeState(tx, row, v1::JOB_STATE_SUCCEEDED, "succeeded"));
               break;
             case v1::CompleteJobRequest::kError:
               SHEARS_RETURN_IF_ERROR(ChangeState(tx, row, v1::JOB_STATE_FAILED, request.error()));
               break;
             case v1::CompleteJobRequest::kCancelled:
               SHEARS_RETURN_IF_ERROR(ChangeState(tx, row, v1::JOB_STATE_CANCELLED, "cancelled by request"));
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
               SHEARS_RETURN_IF_ERROR(ChangeState(tx, row, next, why));
               break;
             }
             default:
               return absl::InvalidArgumentError("outcome: one of result, error, cancelled or crash is required");
           }
           SHEARS_RETURN_IF_ERROR(SaveRow(tx, row));
           return true;
         })
      .status();
}

absl::Status JobStore::Release(const std::string& job_id, const std::string& lease_id, const std::string& why) {
  return Transaction<bool>([&](Tx& tx) -> absl::StatusOr<bool> {
           SHEARS_ASSIGN_OR_RETURN(Row row, LoadLeased(tx, job_id, lease_id));
           const std::string worker = row.worker_id;
           row.job.set_attempt_count(row.job.attempt_count() - 1);
           if (row.job.cancel_requested()) {
             SHEARS_RETURN_IF_ERROR(ChangeState(tx, row, v1::JOB_STATE_CANCELLED, "cancelled; worker shut down"));
           } else {
             SHEARS_RETURN_IF_ERROR(
                 ChangeState(tx, row, v1::JOB_STATE_QUEUED,
                             why.empty() ? absl::StrCat("worker ", worker, " shut down and gave the job back") : why));
           }
           SHEARS_RETURN_IF_ERROR(SaveRow(tx, row));
           return true;
         })
      .status();
}

absl::StatusOr<int> JobStore::ExpireLeases() {
  return Transaction<int>([&](Tx& tx) -> absl::StatusOr<int> {
    // Every replica runs this: each takes the expired leases no other is taking.
    auto q = tx.db.Prepare(absl::StrCat("SELECT id FROM jobs WHERE state = ? AND lease_expire_ms < ?", tx.take_rows));
    q->Bind(1, int64_t{v1::JOB_STATE_RUNNING}).Bind(2, absl::ToUnixMillis(options_.clock()));
    std::vector<std::string> expired;
    for (;;) {
      SHEARS_ASSIGN_OR_RETURN(bool found, q->Step());
      if (!found) break;
      expired.push_back(q->Text(0));
    }
    for (const auto& id : expired) {
      SHEARS_ASSIGN_OR_RETURN(Row row, LoadRow(tx, id));
      const std::string why = absl::StrCat("lease expired on attempt ", row.job.attempt_count(), " of ",
                                           options_.max_attempts, " (worker ", row.worker_id, " stopped heartbeating)");
      v1::JobState next = v1::JOB_STATE_QUEUED;
      if (row.job.cancel_requested()) {
        next = v1::JOB_STATE_CANCELLED;
      } else if (row.job.attempt_count() >= options_.max_attempts) {
        next = v1::JOB_STATE_FAILED;
      }
      SHEARS_RETURN_IF_ERROR(ChangeState(tx, row, next, why));
      SHEARS_RETURN_IF_ERROR(SaveRow(tx, row));
    }
    return static_cast<int>(expired.size());
  });
}

absl::StatusOr<int> JobStore::DeleteEndedBefore(absl::Time cutoff, int limit) {
  return Transaction<int>([&](Tx& tx) -> absl::StatusOr<int> {
    std::vector<std::string> ids;
    {
      auto q = tx.db.Prepare("SELECT id FROM jobs WHERE end_ms IS NOT NULL AND end_ms < ? ORDER BY end_ms LIMIT ?");
      q->Bind(1, absl::ToUnixMillis(cutoff)).Bind(2, int64_t{limit});
      for (;;) {
        SHEARS_ASSIGN_OR_RETURN(bool found, q->Step());
        if (!found) break;
        ids.push_back(q->Text(0));
      }
    }
    for (const auto& id : ids) {
      auto events = tx.db.Prepare("DELETE FROM events WHERE job_id = ?");
      events->Bind(1, id);
      SHEARS_RETURN_IF_ERROR(events->Run());
      auto job = tx.db.Prepare("DELETE FROM jobs WHERE id = ?");
      job->Bind(1, id);
      SHEARS_RETURN_IF_ERROR(job->Run());
    }
    return static_cast<int>(ids.size());
  });
}

absl::StatusOr<std::vector<v1::JobEvent>> JobStore::EventsAfter(const std::string& job_id, int64_t after_sequence,
                                                                int limit) {
  return Read<std::vector<v1::JobEvent>>([&](Tx& tx) -> absl::StatusOr<std::vector<v1::JobEvent>> {
    auto q = tx.db.Prepare("SELECT event FROM events WHERE job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?");
    q->Bind(1, job_id).Bind(2, after_sequence).Bind(3, int64_t{limit});
    std::vector<v1::JobEvent> out;
    for (;;) {
      SHEARS_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      if (!out.emplace_back().ParseFromString(q->Text(0))) return absl::DataLossError("corrupt event record");
    }
    return out;
  });
}

absl::StatusOr<JobStore::Census> JobStore::TakeCensus() {
  return Read<Census>([&](Tx& tx) -> absl::StatusOr<Census> {
    Census census;
    auto by_state = tx.db.Prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state");
    for (;;) {
      SHEARS_ASSIGN_OR_RETURN(bool row, by_state->Step());
      if (!row) break;
      census.jobs[static_cast<v1::JobState>(by_state->Int(0))] = by_state->Int(1);
    }
    auto workers = tx.db.Prepare("SELECT COUNT(DISTINCT worker_id) FROM jobs WHERE state = ?");
    workers->Bind(1, int64_t{v1::JOB_STATE_RUNNING});
    SHEARS_ASSIGN_OR_RETURN(bool found, workers->Step());
    if (found) census.busy_workers = workers->Int(0);
    return census;
  });
}

}  // namespace shears::server
