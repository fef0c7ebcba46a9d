#pragma once
// Serves the workers' long-polling LeaseJob calls and expires leases whose heartbeats stopped.
// One thread does both, so a requeued job goes straight to a waiting worker.

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/job_store.h"
#include "shears/v1/workers.pb.h"

namespace shears::server {

class LeaseDispatcher {
 public:
  // `on_expired`, when set, hears how many leases each expiry pass took back.
  explicit LeaseDispatcher(JobStore* store, std::function<void(int expired)> on_expired = nullptr);
  ~LeaseDispatcher();

  struct Waiter {
    std::string worker_id;
    absl::Time deadline;
    grpc::CallbackServerContext* context;
    v1::LeaseJobResponse* response;
    grpc::ServerUnaryReactor* reactor;
  };
  // The reactor is finished when a job is leased to the worker, when the wait ends empty-handed,
  // or when the call is cancelled.
  void Enqueue(Waiter waiter) ABSL_LOCKS_EXCLUDED(mu_);
  // A job may have become leasable.
  void Wake() ABSL_LOCKS_EXCLUDED(mu_);
  // Answers every waiter with no job and stops the thread.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Distinct workers in a long poll now: the idle ones.
  int WaitingWorkers() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run();
  // Leases queued jobs to the waiters in arrival order; returns those still waiting.
  std::deque<Waiter> Dispatch(std::deque<Waiter> waiters);
  // Every waiter leaves through here.
  void Finish(const Waiter& waiter, const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_);

  JobStore* const store_;
  const std::function<void(int)> on_expired_;
  const absl::Duration expiry_interval_;
  mutable absl::Mutex mu_;
  std::deque<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  // Calls in progress per worker, whether in waiters_ or being dispatched.
  std::map<std::string, int> polling_ ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace shears::server
