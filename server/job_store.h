#pragma once
// The durable record of jobs, their leases and their events, in SQLite (WAL, synchronous commits).
// Every state change and every reported event is appended to the job's event log with the next
// per-job sequence number in the same transaction that changes the job, so a watcher replaying the
// log sees exactly what happened, in order.

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
#include "server/sqlite.h"
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
  int64_t max_db_bytes = 0;
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
  };
  // Called after each committed change, outside the store's lock.
  using Listener = std::function<void(const Change& change)>;

  // Every lease that was running when the store closed gets two lease TTLs from now before it can
  // expire: workers that heartbeated through a server restart keep their jobs.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& path, StoreOptions options);
  void AddListener(Listener listener);
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

  JobStore(std::unique_ptr<Database> db, StoreOptions options);
  absl::Status Migrate();
  absl::Status LimitSize(int64_t bytes);
  // Moves every running lease's expiry to at least `until`.
  absl::Status GraceRunningLeases(absl::Time until);
  // Sets output_uri for the queued and running jobs of a store migrated from version 0.
  absl::Status FillOutputUris() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets end_ms for the ended jobs of a store migrated from version 0 or 1.
  absl::Status FillEndTimes() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `body` in one IMMEDIATE transaction under the lock, then tells the listeners.
  template <typename T, typename Body>
  absl::StatusOr<T> Transaction(Body body) ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<Row> LoadRow(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SaveRow(const Row& row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Row> LoadLeased(const std::string& job_id, const std::string& lease_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends `event` to the row's log, stamping job id, sequence and time.
  absl::Status AppendEvent(Row& row, v1::JobEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets the state, stamps times, clears a lease on leaving RUNNING, and logs the change.
  absl::Status ChangeState(Row& row, v1::JobState state, const std::string& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<Database> db_ ABSL_GUARDED_BY(mu_);
  std::vector<Change> changes_ ABSL_GUARDED_BY(mu_);  // of the open transaction
  const StoreOptions options_;
  absl::Mutex listeners_mu_;
  std::vector<Listener> listeners_ ABSL_GUARDED_BY(listeners_mu_);
};

bool IsTerminal(v1::JobState state);

}  // namespace shears::server
