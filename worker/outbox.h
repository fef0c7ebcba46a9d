#pragma once
// The worker's outbox: what it owes the server for one lease, on disk in <work_dir>/outbox/ until
// the server has answered. Each event is appended to <lease>.events as the engine reports it; the
// numbered batches formed from them and the outcome are recorded in <lease>.pb before they are
// sent. A server outage is waited out (--outage-patience); a worker that dies with reports unsent
// (killed, its pod restarted) delivers them when it starts again, while the lease may still be its
// own, instead of the job running again and publishing a second time. The server applies a batch
// once (by its number) and logs skipped numbers as a gap.

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "shears/v1/attempt.pb.h"

namespace shears::worker {

class Outbox {
 public:
  // The outbox of `lease_id` under `work_dir`, created empty.
  Outbox(const std::string& work_dir, const std::string& job_id, const std::string& lease_id);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // An event of the attempt, kept before it is queued for sending.
  absl::Status Append(const v1::JobEvent& event) ABSL_LOCKS_EXCLUDED(mu_);
  // A batch of the next appended events, numbered: kept before it is sent.
  absl::Status AddBatch(const v1::ReportEventsRequest& batch) ABSL_LOCKS_EXCLUDED(mu_);
  // The server answered the batch (took it, or refused it for good): it is not sent again.
  absl::Status Done(int64_t batch) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status SetOutcome(const v1::CompleteJobRequest& outcome) ABSL_LOCKS_EXCLUDED(mu_);
  // Everything was delivered, or the lease is gone: both files go.
  void Remove() ABSL_LOCKS_EXCLUDED(mu_);

  // What a worker left behind for one lease: the record, and the events it never put in a batch.
  struct Left {
    v1::Outbox record;
    std::vector<v1::JobEvent> unbatched;
  };
  // Every outbox under `work_dir`, oldest first. An unreadable record is reported and removed (a
  // half-written one cannot be: the record is replaced atomically; the events file is read up to
  // its last whole event).
  static std::vector<Left> FindLeft(const std::string& work_dir);
  static void Remove(const std::string& work_dir, const std::string& lease_id);

 private:
  absl::Status Save() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string work_dir_;
  const std::string record_path_;
  const std::string events_path_;
  absl::Mutex mu_;
  int events_fd_ ABSL_GUARDED_BY(mu_) = -1;
  v1::Outbox record_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shears::worker
