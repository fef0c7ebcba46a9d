// Several shears-server replicas on one PostgreSQL database, as deploy/kubernetes/overlays/replicas
// runs them: any replica answers any call, and a job outlives the replicas it was created and
// leased through.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "shears/v1/pruning.grpc.pb.h"
#include "tests/support/model_builders.h"
#include "tests/support/process.h"
#include "tests/support/test_util.h"

namespace shears {
namespace {

using testing::Binary;
using testing::Process;
using testing::TempDir;

std::unique_ptr<grpc::ClientContext> Context(int seconds = 30) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return c;
}

// A WatchJob stream on one replica, read on a thread of its own.
class Watcher {
 public:
  Watcher(v1::Pruning::Stub* replica, const std::string& job_id) : context_(Context(300)) {
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    reader_ = replica->WatchJob(context_.get(), request);
    thread_ = std::thread([this] {
      v1::JobEvent event;
      while (reader_->Read(&event)) {
        absl::MutexLock lock(&mu_);
        events_.push_back(event);
      }
      absl::MutexLock lock(&mu_);
      status_ = reader_->Finish();
      done_ = true;
    });
  }
  ~Watcher() {
    context_->TryCancel();
    thread_.join();
  }
  // Waits until an event satisfies `what` (true), or the stream ends or the time passes (false).
  bool WaitFor(const std::function<bool(const v1::JobEvent&)>& what, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return std::any_of(events_.begin(), events_.end(), what); };
    auto seen_or_done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return seen() || done_; };
    mu_.AwaitWithTimeout(absl::Condition(&seen_or_done), timeout);
    return seen();
  }
  std::vector<v1::JobEvent> Events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  grpc::Status Finished(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
    return done_ ? status_ : grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the stream did not end");
  }

 private:
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<v1::JobEvent> events_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

class ReplicasTest : public ::testing::Test {
 protected:
  // Replicas A, B and C on one database.
  void StartReplicas(const std::string& lease_ttl) {
    store_ = testing::TestStoreUrl(dir_ / "store");
    ASSERT_EQ(store_.rfind("postgresql://", 0), 0u) << "run with SHEARS_TEST_STORE=postgresql (ctest does)";
    for (const char* name : {"a", "b", "c"}) {
      std::filesystem::create_directories(dir_ / name);
      auto server = testing::StartServer(dir_ / name, {"--db", store_, "--lease-ttl", lease_ttl});
      ASSERT_FALSE(server.address.empty()) << server.process->Log();
      stubs_.push_back(v1::Pruning::NewStub(grpc::CreateChannel(server.address, grpc::InsecureChannelCredentials())));
      addresses_.push_back(server.address);
      replicas_.push_back(std::move(server.process));
    }
  }

  // A magnitude job on the model in `model` (under the test's directory), created through replica
  // `replica`.
  v1::Job CreateOn(int replica, const std::string& model) {
    v1::CreateJobRequest create;
    create.mutable_spec()->set_model_uri("file://" + (dir_ / model));
    create.mutable_spec()->set_method(v1::METHOD_MAGNITUDE);
    create.mutable_spec()->set_target_sparsity(0.5);
    create.mutable_spec()->mutable_output()->set_uri("file://" + (dir_ / "out"));
    v1::Job job;
    const grpc::Status st = stubs_[replica]->CreateJob(Context().get(), create, &job);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return job;
  }

  // A worker dialing `target` (one replica, or "ipv4:A,B" to fail over along).
  std::unique_ptr<Process> StartWorker(const std::string& target, const std::string& threads,
                                       const std::string& poll_wait) {
    return std::make_unique<Process>(std::vector<std::string>{Binary("worker/shears-worker"), "--server", target,
                                                              "--threads", threads, "--work-dir", dir_ / "work",
                                                              "--poll-wait", poll_wait, "--worker-id", "w"},
                                     dir_ / "worker.log");
  }

  // The replicas `first`, `second`, ... as one gRPC target, failed over in that order.
  std::string Along(std::initializer_list<int> replicas) const {
    std::vector<std::string> picked;
    for (int i : replicas) picked.push_back(addresses_[i]);
    return absl::StrCat("ipv4:", absl::StrJoin(picked, ","));
  }

  v1::Job Get(int replica, const std::string& id) {
    v1::GetJobRequest request;
    request.set_job_id(id);
    v1::Job job;
    grpc::Status st = stubs_[replica]->GetJob(Context().get(), request, &job);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return job;
  }

  TempDir dir_;
  std::string store_;
  std::vector<std::unique_ptr<Process>> replicas_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<v1::Pruning::Stub>> stubs_;
};

// Created on A; leased through B (the worker's first address: a worker reaches the replicas
// through a Service, here a list it fails over along); watched on C; then A and B are killed -9
// mid-job. The worker goes on through C, the job ends once, on its first attempt, and C's stream
// carried every event, live, without a gap.
TEST_F(ReplicasTest, AJobCreatedOnALeasedThroughBAndWatchedOnCSurvivesAAndBBeingKilled) {
  ASSERT_NO_FATAL_FAILURE(StartReplicas("10s"));
  testing::WriteSyntheticLlama(dir_ / "slow", 48, 512, 1408);
  const v1::Job job = CreateOn(0, "slow");
  ASSERT_FALSE(job.id().empty());
  EXPECT_EQ(Get(2, job.id()).state(), v1::JOB_STATE_QUEUED) << "C reads what A wrote";

  Watcher watcher(stubs_[2].get(), job.id());
  const auto worker = StartWorker(Along({1, 2}), "2", "2s");
  ASSERT_TRUE(watcher.WaitFor([](const v1::JobEvent& e) { return e.has_layer(); }, absl::Seconds(60)))
      << "C's stream follows the layers the worker reports through B\n"
      << worker->Log();
  EXPECT_EQ(replicas_[0]->Stop(SIGKILL), 128 + SIGKILL);
  EXPECT_EQ(replicas_[1]->Stop(SIGKILL), 128 + SIGKILL);
  ASSERT_EQ(Get(2, job.id()).state(), v1::JOB_STATE_RUNNING) << "killed mid-job (a model too small for this machine?)";

  const grpc::Status streamed = watcher.Finished(absl::Seconds(180));
  ASSERT_TRUE(streamed.ok()) << streamed.error_message() << "\n" << worker->Log();
  const v1::Job done = Get(2, job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error() << "\n" << worker->Log();
  EXPECT_EQ(done.attempt_count(), 1) << "the replicas' deaths cost no attempt\n" << worker->Log();
  const auto live = watcher.Events();
  int layers = 0;
  for (size_t i = 0; i < live.size(); ++i) {
    EXPECT_EQ(live[i].sequence(), static_cast<int64_t>(i) + 1) << "gapless";
    EXPECT_FALSE(live[i].has_report_gap());
    layers += live[i].has_layer();
  }
  EXPECT_EQ(layers, done.result().layers_size());
  ASSERT_FALSE(live.empty());
  EXPECT_EQ(live.back().state_change().state(), v1::JOB_STATE_SUCCEEDED);
  int ended = 0;
  for (const auto& e : live) ended += e.has_state_change() && e.state_change().state() == v1::JOB_STATE_SUCCEEDED;
  EXPECT_EQ(ended, 1) << "ended exactly once";

  // Replayed on C later: the same log.
  Watcher replay(stubs_[2].get(), job.id());
  ASSERT_TRUE(replay.Finished(absl::Seconds(30)).ok());
  const auto replayed = replay.Events();
  ASSERT_EQ(replayed.size(), live.size());
  for (size_t i = 0; i < live.size(); ++i) EXPECT_EQ(replayed[i].SerializeAsString(), live[i].SerializeAsString());
}

// A worker long-polling one replica gets a job created on another at once, not at its next poll:
// the creating replica's NOTIFY wakes the others' dispatchers.
TEST_F(ReplicasTest, AWorkerWaitingOnOneReplicaIsWokenByAJobQueuedOnAnother) {
  // A 30 s TTL: B's own lease-expiry pass, which would find the job too, comes every 5 s.
  ASSERT_NO_FATAL_FAILURE(StartReplicas("30s"));
  testing::WriteSyntheticLlama(dir_ / "small", 2, 64, 176);
  const auto worker = StartWorker(addresses_[1], "1", "60s");
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the worker is in its long poll on B
  const v1::Job job = CreateOn(0, "small");
  ASSERT_FALSE(job.id().empty());
  const auto created = std::chrono::steady_clock::now();
  Watcher watcher(stubs_[2].get(), job.id());
  ASSERT_TRUE(watcher.WaitFor(
      [](const v1::JobEvent& e) { return e.has_state_change() && e.state_change().state() == v1::JOB_STATE_RUNNING; },
      absl::Seconds(30)))
      << worker->Log();
  // Far inside the 60 s poll, and before B's next expiry pass (5 s) would have found it.
  EXPECT_LT(std::chrono::steady_clock::now() - created, std::chrono::seconds(2)) << worker->Log();
  ASSERT_TRUE(watcher.Finished(absl::Seconds(120)).ok());
  EXPECT_EQ(Get(1, job.id()).state(), v1::JOB_STATE_SUCCEEDED);
}

// A rolling update: replica A drains (SIGTERM). Its WatchJob streams end UNAVAILABLE, shearsctl
// resumes after the last event it printed through B, and the worker's long polls and reports move
// to B too; the watch prints the whole log once, in order, and the job ends on its first attempt.
TEST_F(ReplicasTest, ADrainingReplicaHandsItsStreamsBackAndShearsctlGoesOnThroughAnother) {
  ASSERT_NO_FATAL_FAILURE(StartReplicas("10s"));
  testing::WriteSyntheticLlama(dir_ / "slow", 48, 512, 1408);
  const v1::Job job = CreateOn(0, "slow");
  ASSERT_FALSE(job.id().empty());
  const std::string both = Along({0, 1});
  const auto worker = StartWorker(both, "2", "2s");
  Process watch({Binary("client/shearsctl"), "--server", both, "--json", "watch", job.id()}, dir_ / "watch.log");
  Watcher layers(stubs_[2].get(), job.id());
  ASSERT_TRUE(layers.WaitFor([](const v1::JobEvent& e) { return e.has_layer(); }, absl::Seconds(60))) << worker->Log();
  EXPECT_EQ(replicas_[0]->Stop(SIGTERM), 0) << replicas_[0]->Log();
  ASSERT_EQ(Get(1, job.id()).state(), v1::JOB_STATE_RUNNING) << "drained mid-job (a model too small for this machine?)";
  ASSERT_EQ(watch.Wait(), 0) << watch.Log();
  const std::string log = watch.Log();
  EXPECT_NE(log.find("the watch was interrupted (the server is draining; watch again with after_sequence"),
            std::string::npos)
      << log;
  // Every event once, in order: the sequences printed are 1, 2, ... N.
  int64_t expected = 1;
  for (const auto& line : absl::StrSplit(log, '\n')) {
    const size_t at = line.find("\"sequence\":");
    if (at == absl::string_view::npos) continue;
    EXPECT_EQ(std::stoll(std::string(line.substr(at + 12))), expected) << line;  // "sequence":"N" (int64 is a string)
    ++expected;
  }
  const v1::Job done = Get(1, job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.attempt_count(), 1) << worker->Log();
  EXPECT_EQ(expected - 1, static_cast<int64_t>(layers.Events().size())) << "the whole log";
}

}  // namespace
}  // namespace shears
