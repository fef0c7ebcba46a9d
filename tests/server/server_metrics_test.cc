// The server's metrics follow the job store's changes: what an operator's dashboard is built on.
#include "server/server_metrics.h"

#include <gtest/gtest.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "tests/support/test_util.h"

namespace shears::server {
namespace {

using shears::testing::TempDir;

class ServerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions options;
    options.lease_ttl = absl::Seconds(10);
    options.max_attempts = 2;
    options.clock = [this] { return now_; };
    store_ = JobStore::Open(dir_ / "jobs.db", options).value();
    metrics_ = std::make_shared<ServerMetrics>(store_.get(), [this] { return idle_workers_; });
    store_->AddListener([this](const JobStore::Change& change) { metrics_->OnJobChanged(change); });
  }

  std::string Create(v1::Method method) {
    v1::JobSpec spec;
    spec.set_model_uri("file:///m");
    spec.set_method(method);
    spec.set_target_sparsity(0.5);
    spec.mutable_output()->set_uri(absl::StrCat("file:///out/", ++outputs_));  // each its own
    return store_->Create(spec, "", "default", "")->job.id();
  }

  // A counter's or gauge's value, or a histogram's count (name_count) or sum (name_sum); -1 when the
  // series does not exist.
  double Value(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    for (const auto& family : metrics_->Collect()) {
      const bool count = name == family.name + "_count", sum = name == family.name + "_sum";
      if (name != family.name && !count && !sum) continue;
      for (const auto& metric : family.metric) {
        std::map<std::string, std::string> have;
        for (const auto& label : metric.label) have[label.name] = label.value;
        if (have != labels) continue;
        if (count) return double(metric.histogram.sample_count);
        if (sum) return metric.histogram.sample_sum;
        return family.type == prometheus::MetricType::Counter ? metric.counter.value : metric.gauge.value;
      }
    }
    return -1;
  }

  TempDir dir_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  int idle_workers_ = 0;
  int outputs_ = 0;
  std::unique_ptr<JobStore> store_;
  std::shared_ptr<ServerMetrics> metrics_;
};

TEST_F(ServerMetricsTest, EveryMethodsSeriesExistsAtZeroBeforeAnyJob) {
  EXPECT_EQ(Value("shears_jobs_created_total", {{"method", "sparsegpt"}}), 0);
  EXPECT_EQ(Value("shears_jobs_finished_total", {{"method", "gum"}, {"outcome", "failed"}}), 0);
  EXPECT_EQ(Value("shears_job_run_seconds_count", {{"method", "wanda"}, {"outcome", "succeeded"}}), 0);
  EXPECT_EQ(Value("shears_jobs", {{"state", "queued"}}), 0);
  EXPECT_EQ(Value("shears_lease_expiries_total"), 0);
}

TEST_F(ServerMetricsTest, ALeasedJobObservesItsQueueWaitAndOnSuccessItsRunTime) {
  const std::string id = Create(v1::METHOD_WANDA);
  Create(v1::METHOD_MAGNITUDE);
  EXPECT_EQ(Value("shears_jobs_created_total", {{"method", "wanda"}}), 1);
  EXPECT_EQ(Value("shears_jobs", {{"state", "queued"}}), 2);
  now_ += absl::Seconds(7);
  auto lease = store_->LeaseNext("w1").value().value();
  idle_workers_ = 3;
  EXPECT_EQ(Value("shears_job_queue_wait_seconds_count", {{"method", "wanda"}}), 1);
  EXPECT_EQ(Value("shears_job_queue_wait_seconds_sum", {{"method", "wanda"}}), 7);
  EXPECT_EQ(Value("shears_jobs", {{"state", "running"}}), 1);
  EXPECT_EQ(Value("shears_workers", {{"state", "busy"}}), 1);
  EXPECT_EQ(Value("shears_workers", {{"state", "idle"}}), 3);

  now_ += absl::Seconds(90);
  v1::CompleteJobRequest done;
  done.set_job_id(id);
  done.set_lease_id(lease.lease_id);
  done.mutable_result();
  ASSERT_TRUE(store_->Complete(done).ok());
  EXPECT_EQ(Value("shears_jobs_finished_total", {{"method", "wanda"}, {"outcome", "succeeded"}}), 1);
  EXPECT_EQ(Value("shears_job_run_seconds_sum", {{"method", "wanda"}, {"outcome", "succeeded"}}), 90);
  EXPECT_EQ(Value("shears_jobs", {{"state", "succeeded"}}), 1);
  EXPECT_EQ(Value("shears_workers", {{"state", "busy"}}), 0);
}

TEST_F(ServerMetricsTest, ExpiredLeasesAreRetriesAndAJobGivenBackIsNeither) {
  const std::string id = Create(v1::METHOD_MAGNITUDE);
  auto first = store_->LeaseNext("w1").value().value();
  ASSERT_TRUE(store_->Release(id, first.lease_id).ok());
  auto second = store_->LeaseNext("w2").value().value();
  EXPECT_EQ(Value("shears_job_queue_wait_seconds_count", {{"method", "magnitude"}}), 1)
      << "the wait before the first lease only";
  EXPECT_EQ(Value("shears_job_retries_total", {{"method", "magnitude"}}), 0) << "a release is not a retry";

  now_ += absl::Seconds(11);
  metrics_->OnLeasesExpired(store_->ExpireLeases().value());
  store_->LeaseNext("w3").value().value();
  EXPECT_EQ(Value("shears_lease_expiries_total"), 1);
  EXPECT_EQ(Value("shears_job_retries_total", {{"method", "magnitude"}}), 1);
  now_ += absl::Seconds(11);
  metrics_->OnLeasesExpired(store_->ExpireLeases().value());
  EXPECT_EQ(Value("shears_lease_expiries_total"), 2);
  EXPECT_EQ(Value("shears_jobs_finished_total", {{"method", "magnitude"}, {"outcome", "failed"}}), 1)
      << "after max_attempts lapsed leases";
}

TEST_F(ServerMetricsTest, AJobCancelledInTheQueueNeverRan) {
  const std::string id = Create(v1::METHOD_RANDOM);
  ASSERT_TRUE(store_->Cancel(id).ok());
  EXPECT_EQ(Value("shears_jobs_finished_total", {{"method", "random"}, {"outcome", "cancelled"}}), 1);
  EXPECT_EQ(Value("shears_job_run_seconds_count", {{"method", "random"}, {"outcome", "cancelled"}}), 0);
}


// A caller can send any path; only the methods the server has become label values.
TEST_F(ServerMetricsTest, RpcLabelsNameOnlyMethodsTheServerHas) {
  metrics_->CountRpc("/shears.v1.Pruning/CreateJob", grpc::StatusCode::OK);
  metrics_->CountRpc("/shears.v1.Pruning/Invented1", grpc::StatusCode::UNIMPLEMENTED);
  metrics_->CountRpc("/shears.v1.Pruning/Invented2", grpc::StatusCode::UNIMPLEMENTED);
  metrics_->CountRpc("/made.up.Service/X", grpc::StatusCode::UNIMPLEMENTED);
  metrics_->CountRpc("/grpc.health.v1.Health/Check", grpc::StatusCode::OK);
  EXPECT_EQ(Value("shears_grpc_requests_total", {{"service", "shears.v1.Pruning"}, {"method", "CreateJob"}, {"code", "OK"}}), 1);
  EXPECT_EQ(Value("shears_grpc_requests_total", {{"service", "other"}, {"method", "other"}, {"code", "UNIMPLEMENTED"}}), 3);
  EXPECT_EQ(Value("shears_grpc_requests_total", {{"service", "shears.v1.Pruning"}, {"method", "Invented1"}, {"code", "UNIMPLEMENTED"}}), -1);
  EXPECT_EQ(Value("shears_grpc_requests_total", {{"service", "grpc.health.v1.Health"}, {"method", "Check"}, {"code", "OK"}}), 1);
}

}  // namespace
}  // namespace shears::server
