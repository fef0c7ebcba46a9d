#pragma once
// The lease loop of `shears-worker --server ADDR`: lease a job, run it while heartbeating, report
// its events, complete it; on shutdown give the running job back.

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc_limits.h"
#include "shears/v1/workers.grpc.pb.h"
#include "common/channel.h"
#include "worker/storage/filesystem.h"
#include "worker/worker_metrics.h"

namespace shears::worker {

struct WorkerOptions {
  std::string server;  // host:port
  std::string worker_id;
  std::string device = "cpu";  // for the log
  std::string work_dir = "/tmp/shears-worker";  // its outbox/ (worker/outbox.h); the engine's scratch
  // The engine process each attempt runs in (worker/attempt/engine_process.h): this binary as
  // `shears-worker attempt` with the worker's own flags, which say how to run the engine.
  std::string engine_binary = "/proc/self/exe";  // the worker's own version, even if replaced on disk
  std::vector<std::string> engine_argv;
  StorageOptions storage;  // its transfer counters, told the engine process's bytes
  absl::Duration poll_wait = absl::Seconds(20);
  absl::Duration rpc_timeout = absl::Seconds(10);
  // How long events, the publishing fence and the outcome keep retrying a server that does not
  // answer (--outage-patience) before the worker gives up on them.
  absl::Duration outage_patience = absl::Minutes(15);
  int max_message_bytes = kDefaultMaxMessageBytes;  // --max-message-bytes, as the server's
  // The connection to `server` (common/channel.h: TLS, client certificate); null: plaintext.
  std::shared_ptr<grpc::Channel> channel;
  BearerToken token;  // sent with every call (re-read when its file changes); empty: none
  WorkerMetrics* metrics = nullptr;  // told of each job; may be null
};

class Worker {
 public:
  // The patience of a worker told to stop, well inside Kubernetes' grace period.
  static constexpr absl::Duration kStoppingPatience = absl::Seconds(20);

  // Whether a call that has failed for `waited` may be tried again.
  using Patience = std::function<bool(absl::Duration waited)>;

  explicit Worker(WorkerOptions options);
  // Returns after Stop(): the running job, if any, is given back to the queue first.
  void Run();
  // Safe from any thread.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void RunLeased(const v1::LeaseJobResponse& lease);
  // Sends what the outboxes of earlier leases still hold (worker/outbox.h).
  void DeliverLeftovers();
  grpc::Status SendBatch(const v1::ReportEventsRequest& request, const Patience& patience);
  grpc::Status SendOutcome(const v1::CompleteJobRequest& request, const Patience& patience);
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) const;

  const WorkerOptions options_;
  std::unique_ptr<v1::Workers::Stub> stub_;
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  grpc::ClientContext* polling_ ABSL_GUARDED_BY(mu_) = nullptr;  // the long poll to cut short on Stop
};

}  // namespace shears::worker
