#pragma once
// The durable record of jobs, their leases and their events, in SQLite (WAL, synchronous commits) for
// one server or in PostgreSQL for several replicas serving one queue (server/sql). Every state
// change and every reported event is appended to the job's event log with the next per-job
// sequence number in the same transaction that changes the job, so a watcher replaying the log
// sees exactly what happened, in order. On PostgreSQL the transactions that change a job lock its
// row, leases are taken with SKIP LOCKED, and each commit is announced to the other replicas.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/sql/database.h"
#include "shears/v1/job.pb.h"
#include "shears/v1/workers.pb.h"

namespace shears::server {

struct StoreOptions {
  absl::Duration lease_ttl = absl::Seconds(30);
  // A job whose lease expires this many times fails.
  int max_attempts = 3;
  // A job whose engine process crashed this many times fails (CompleteJobRequest.crash) instead of
  // crashing another worker; below it, a crash sends the job back to the queue.
  int max_crashes = 2;
  // The most queued and running jobs one tenant may have at once (0: no limit).
  int64_t tenant_quota = 0;
  // The store's size bound (0: the disk's): past it, writes are UNAVAILABLE as on a full disk.
  // SQLite only: a PostgreSQL database is bounded by its own server.
  int64_t max_db_bytes = 0;
  // PostgreSQL's connection pool and timeouts.
  sql::DatabaseOptions database;
  // Injected by tests that move time by hand.
  std::function<absl::Time()> clock = absl::Now;
};

class JobStore {
 public:
  // A committed change to one job: its record afterwards, and its state before (UNSPECIFIED when
  // the change created it; equal to job.state() for progress and cancellation requests).
  struct Change {
    v1::Job job;
    v1::JobState previous_state = v1::JOB_STATE_UNSPECIFIED;
    bool first_lease = false;  // the job's first RUNNING (a job given back keeps its start time)
    // Committed by another replica: job holds only its id and state (the record is one Get away),
    // and previous_state is not known. An empty id means "any job may have changed" (this replica
    // lost word of the others for a while).
    bool remote = false;
  };
  // Called after each committed change, outside any transaction; for remote changes, from the
  // database's listening thread.
  using Listener = std::function<void(const Change& change)>;

  // `url`: as sql::Database::Open takes it (a path, sqlite://PATH, postgresql://...). The schema is
  // created or migrated (on PostgreSQL under an advisory lock, so that replicas starting together
  // take turns). Every lease that was running gets two lease TTLs from now before it can expire:
  // workers that heartbeated through a server restart keep their jobs.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& url, StoreOptions options);
  ~JobStore();
  void AddListener(Listener listener);
  // No listener is called after it returns (a server that stops drops them before they die).
  void RemoveListeners();
  const StoreOptions& options() const { return options_; }

  struct Created {
    v1::Job job;
    bool created;  // false when request_id named an existing job
  };
  // A job of `tenant`, made by `creator`. A request_id the tenant used before returns its job (with
  // a different spec, ALREADY_EXISTS); past the tenant's quota, RESOURCE_EXHAUSTED; an output that
  // overlaps the output of a job that has not ended, FAILED_PRECONDITION.
  absl::StatusOr<Created> Create(const v1::JobSpec& spec, const std::string& request_id, const std::string& tenant,
                                 const std::string& creator);
  absl::StatusOr<v1::Job> Get(const std::string& job_id);

  struct Page {
    std::vector<v1::Job> jobs;
    std::string next_page_token;
  };
  // `tenant` empty: every tenant's jobs. Summaries: result.layers and result.redundancy are left
  // out (Get has them), and a page ends early at kMaxListPageBytes.
  absl::StatusOr<Page> List(v1::JobState state, int page_size, const std::string& page_token,
                            const std::string& tenant = "");
  // Queued: CANCELLED at once. Running: marked, and the worker learns it at its next heartbeat.
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id);

  struct Lease {
    v1::Job job;
    std::string lease_id;
  };
  // The oldest queued job, now RUNNING under a new lease; nullopt when the queue is empty.
  absl::StatusOr<std::optional<Lease>> LeaseNext(const std::string& worker_id);
  // Renews the lease; returns whether cancellation was requested.
  absl::StatusOr<bool> Heartbeat(const std::string& job_id, const std::string& lease_id);
  // Returns the last sequence number assigned. `batch` (1, 2, ... within the lease; 0: none): a
  // batch applied already changes nothing, so a retried call cannot log its events twice, and
  // numbers skipped are logged as a ReportGap. Past kMaxEventsPerJob, RESOURCE_EXHAUSTED.
  absl::StatusOr<int64_t> AppendEvents(const std::string& job_id, const std::string& lease_id,
                                       const std::vector<v1::JobEvent>& events, int64_t batch = 0);
  absl::Status Complete(const v1::CompleteJobRequest& request);
  // Back to the queue; the attempt does not count. `why` goes in the state change (default: the
  // worker shut down and gave the job back).
  absl::Status Release(const std::string& job_id, const std::string& lease_id, const std::string& why = "");
  // Requeues (or fails, after max_attempts) every running job whose lease has expired.
  absl::StatusOr<int> ExpireLeases();

  // Deletes up to `limit` jobs that ended before `cutoff`, with their events (retention); returns
  // how many. One short transaction: callers loop while it returns `limit`.
  absl::StatusOr<int> DeleteEndedBefore(absl::Time cutoff, int limit);

  absl::StatusOr<std::vector<v1::JobEvent>> EventsAfter(const std::string& job_id, int64_t after_sequence,
                                                        int limit);

  // What the metrics show at each scrape.
  struct Census {
    std::map<v1::JobState, int64_t> jobs;  // by state; states with no job are absent
    int64_t busy_workers = 0;              // distinct workers holding a lease
  };
  absl::StatusOr<Census> TakeCensus();

 private:
  struct Row;
  // One transaction (or one read) on a connection of the database's, and the changes it made.
  struct Tx;

  JobStore(std::unique_ptr<sql::Database> db, StoreOptions options);
  absl::Status LimitSize(int64_t bytes);
  // Moves every running lease's expiry to at least `until`.
  absl::Status GraceRunningLeases(absl::Time until);
  // Runs `body(tx)` in one write transaction, announces its changes to the other replicas as it
  // commits, then tells the listeners.
  template <typename T, typename Body>
  absl::StatusOr<T> Transaction(Body body);
  // Runs `body(tx)` on a connection, outside any transaction.
  template <typename T, typename Body>
  absl::StatusOr<T> Read(Body body);
  void Tell(const std::vector<Change>& changes);
  // What another replica announced (see Transaction).
  void Heard(const std::string& payload);

  absl::StatusOr<Row> LoadRow(Tx& tx, const std::string& job_id);
  absl::Status SaveRow(Tx& tx, const Row& row);
  absl::StatusOr<Row> LoadLeased(Tx& tx, const std::string& job_id, const std::string& lease_id);
  // Appends `event` to the row's log, stamping job id, sequence and time.
  absl::Status AppendEvent(Tx& tx, Row& row, v1::JobEvent event);
  // Sets the state, stamps times, clears a lease on leaving RUNNING, and logs the change.
  absl::Status ChangeState(Tx& tx, Row& row, v1::JobState state, const std::string& message);

  std::unique_ptr<sql::Database> db_;
  const StoreOptions options_;
  const std::string replica_id_;  // names this server's announcements, so that it skips its own
  absl::Mutex listeners_mu_;
  std::vector<Listener> listeners_ ABSL_GUARDED_BY(listeners_mu_);
};

bool IsTerminal(v1::JobState state);

}  // namespace shears::server
