#include "worker/worker_metrics.h"

#include "worker/engine/runtime/runtime.h"

namespace shears::worker {
namespace {

const prometheus::Histogram::BucketBoundaries kStageBuckets = {0.1, 0.5, 1,   5,    15,   30,
                                                               60,  300, 900, 1800, 3600, 14400};

constexpr const char* kStages[] = {"download", "calibrate", "prune", "evaluate", "upload"};
constexpr const char* kOutcomes[] = {"succeeded", "failed", "cancelled", "crashed", "released", "abandoned"};

// The stage a progress event's stage name belongs to. "loading" and "measuring" are the engine
// reading the model and calibration text and measuring the dense model; the per-block calibration
// passes happen while pruning and count there.
std::string StageOf(const std::string& progress_stage) {
  static const auto* stages = new std::map<std::string, std::string>{
      {"downloading", "download"}, {"loading", "calibrate"},  {"measuring", "calibrate"},
      {"pruning", "prune"},        {"fine-tuning", "prune"},  {"writing", "prune"},
      {"searching", "prune"},
      {"evaluating", "evaluate"},  {"publishing", "upload"},  {"done", ""}};
  auto it = stages->find(progress_stage);
  return it == stages->end() ? "?" : it->second;
}

}  // namespace

WorkerMetrics::WorkerMetrics(std::string device)
    : device_(std::move(device)),
      registry_(std::make_shared<prometheus::Registry>()),
      stage_seconds_(prometheus::BuildHistogram()
                         .Name("shears_worker_stage_duration_seconds")
                         .Help("Time a job spent in each stage (download, calibrate, prune, evaluate, upload), observed when it ends")
                         .Register(*registry_)),
      downloaded_(prometheus::BuildCounter()
                      .Name("shears_worker_downloaded_bytes_total")
                      .Help("Bytes received from model sources and datasets over the network")
                      .Register(*registry_)
                      .Add({})),
      uploaded_(prometheus::BuildCounter()
                    .Name("shears_worker_uploaded_bytes_total")
                    .Help("Bytes sent to object storage")
                    .Register(*registry_)
                    .Add({})),
      blocks_(prometheus::BuildCounter()
                  .Name("shears_worker_blocks_pruned_total")
                  .Help("Decoder blocks pruned")
                  .Register(*registry_)
                  .Add({})),
      jobs_(prometheus::BuildCounter()
                .Name("shears_worker_jobs_total")
                .Help("Job attempts this worker ran, by outcome")
                .Register(*registry_)),
      busy_(prometheus::BuildGauge()
                .Name("shears_worker_busy")
                .Help("1 while the worker runs a job")
                .Register(*registry_)
                .Add({})),
      progress_(prometheus::BuildGauge()
                    .Name("shears_worker_job_progress_ratio")
                    .Help("Progress of the running job, 0 to 1")
                    .Register(*registry_)
                    .Add({})),
      peak_memory_(prometheus::BuildGauge()
                       .Name("shears_worker_peak_device_memory_bytes")
                       .Help("Peak memory of the current (or last) job on the worker's device")
                       .Register(*registry_)
                       .Add({{"device", device_}})) {
  for (const char* stage : kStages) stage_seconds_.Add({{"stage", stage}}, kStageBuckets);
  for (const char* outcome : kOutcomes) jobs_.Add({{"outcome", outcome}});
}

TransferCounters WorkerMetrics::Counters() {
  return {[this](int64_t bytes) { downloaded_.Increment(double(bytes)); },
          [this](int64_t bytes) { uploaded_.Increment(double(bytes)); }};
}

void WorkerMetrics::JobStarted() {
  engine::ResetPeakMemory(device_);
  absl::MutexLock lock(&mu_);
  busy_.Set(1);
  progress_.Set(0);
  last_block_ = -1;
  stage_.clear();
  stage_seconds_of_job_.clear();
}

void WorkerMetrics::EnterStage(const std::string& stage) {
  const absl::Time now = absl::Now();
  if (!stage_.empty()) stage_seconds_of_job_[stage_] += absl::ToDoubleSeconds(now - stage_start_);
  stage_ = stage;
  stage_start_ = now;
}

void WorkerMetrics::OnEvent(const v1::JobEvent& event) {
  absl::MutexLock lock(&mu_);
  if (event.has_progress()) {
    progress_.Set(event.progress().fraction());
    const std::string stage = StageOf(event.progress().stage());
    if (stage != "?" && stage != stage_) EnterStage(stage);
  }
  if (event.has_layer() && event.layer().block() != last_block_) {
    last_block_ = event.layer().block();
    blocks_.Increment();
  }
}

void WorkerMetrics::JobEnded(const std::string& outcome) {
  absl::MutexLock lock(&mu_);
  EnterStage("");
  for (const auto& [stage, seconds] : stage_seconds_of_job_) {
    stage_seconds_.Add({{"stage", stage}}, kStageBuckets).Observe(seconds);
  }
  stage_seconds_of_job_.clear();
  busy_.Set(0);
  jobs_.Add({{"outcome", outcome}}).Increment();
}

std::vector<prometheus::MetricFamily> WorkerMetrics::Collect() const {
  peak_memory_.Set(double(engine::PeakMemoryBytes(device_)));
  return registry_->Collect();
}

}  // namespace shears::worker
