#pragma once
// Every metric shears-worker exports, in one place: stage durations, bytes over the network,
// blocks pruned, the current job's progress and peak device memory.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shears/v1/job.pb.h"
#include "worker/storage/http_client.h"

namespace shears::worker {

class WorkerMetrics final : public prometheus::Collectable {
 public:
  explicit WorkerMetrics(std::string device);

  // For StorageOptions::counters.
  TransferCounters Counters();

  // One job attempt: started, its events as they go out, and how it ended ("succeeded", "failed",
  // "cancelled", "released": given back on shutdown, "abandoned": the lease was lost).
  void JobStarted() ABSL_LOCKS_EXCLUDED(mu_);
  void OnEvent(const v1::JobEvent& event) ABSL_LOCKS_EXCLUDED(mu_);
  void JobEnded(const std::string& outcome) ABSL_LOCKS_EXCLUDED(mu_);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  // Adds the running stage's time to the job's total for it and opens `stage` (empty: none).
  void EnterStage(const std::string& stage) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string device_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>& stage_seconds_;
  prometheus::Counter& downloaded_;
  prometheus::Counter& uploaded_;
  prometheus::Counter& blocks_;
  prometheus::Family<prometheus::Counter>& jobs_;
  prometheus::Gauge& busy_;
  prometheus::Gauge& progress_;
  prometheus::Gauge& peak_memory_;

  absl::Mutex mu_;
  std::string stage_ ABSL_GUARDED_BY(mu_);
  absl::Time stage_start_ ABSL_GUARDED_BY(mu_);
  // The running job's time per stage; a stage can come back (the engine measures the dense model,
  // prunes, then measures again), and the histograms see one total per stage and job.
  std::map<std::string, double> stage_seconds_of_job_ ABSL_GUARDED_BY(mu_);
  int last_block_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace shears::worker
