#include "server/job_store.h"
#include "server/retention.h"

#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/uri.h"
#include "tests/support/test_postgres.h"
#include "tests/support/test_util.h"

namespace shears::server {
namespace {

using shears::testing::TempDir;

// Every test runs on both stores: SQLite, and PostgreSQL (a database of its own on the test server).
class JobStoreTest : public ::testing::TestWithParam<sql::Dialect> {
 protected:
  void SetUp() override {
    if (GetParam() == sql::Dialect::kPostgres) {
      auto url = shears::testing::NewTestDatabase();
      ASSERT_TRUE(url.ok()) << url.status();
      url_ = *url;
    } else {
      url_ = dir_ / "jobs.db";
    }
    Reopen();
  }

  void Reopen(int max_attempts = 2, int max_crashes = 2, int64_t max_db_bytes = 0) {
    store_.reset();
    StoreOptions options;
    options.max_db_bytes = max_db_bytes;
    options.lease_ttl = absl::Seconds(10);
    options.max_attempts = max_attempts;
    options.max_crashes = max_crashes;
    options.clock = [this] { return now_; };
    auto store = JobStore::Open(url_, options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  v1::JobSpec Spec(double sparsity = 0.5) {
    v1::JobSpec spec;
    spec.set_model_uri("file:///models/m");
    spec.set_method(v1::METHOD_MAGNITUDE);
    spec.set_target_sparsity(sparsity);
    // Each job its own output: two jobs that have not ended may not share one.
    spec.mutable_output()->set_uri(absl::StrCat("file:///out/", outputs_++));
    return spec;
  }

  static v1::JobEvent Progress(double fraction) {
    v1::JobEvent event;
    event.mutable_progress()->set_stage("pruning");
    event.mutable_progress()->set_fraction(fraction);
    return event;
  }

  std::vector<v1::JobEvent> Events(const std::string& id) { return store_->EventsAfter(id, 0, 1000).value(); }

  TempDir dir_;
  std::string url_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  std::unique_ptr<JobStore> store_;
  int outputs_ = 0;
};

std::string StoreName(const ::testing::TestParamInfo<sql::Dialect>& info) {
  return info.param == sql::Dialect::kPostgres ? "PostgreSQL" : "SQLite";
}
INSTANTIATE_TEST_SUITE_P(Stores, JobStoreTest, ::testing::Values(sql::Dialect::kSqlite, sql::Dialect::kPostgres),
                         StoreName);

// What only SQLite has: stores written by older servers, and a size bound of its own.
class SqliteJobStoreTest : public JobStoreTest {};
INSTANTIATE_TEST_SUITE_P(Stores, SqliteJobStoreTest, ::testing::Values(sql::Dialect::kSqlite), StoreName);

TEST_P(JobStoreTest, CreateIsIdempotentByRequestId) {
  const v1::JobSpec spec = Spec();
  auto first = store_->Create(spec, "req-1", "team-a", "alice");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->created);
  auto again = store_->Create(spec, "req-1", "team-a", "alice");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->job.id(), first->job.id());
  EXPECT_EQ(store_->List(v1::JOB_STATE_UNSPECIFIED, 100, "")->jobs.size(), 1u);

  auto conflicting = store_->Create(Spec(0.7), "req-1", "team-a", "alice");
  EXPECT_EQ(conflicting.status().code(), absl::StatusCode::kAlreadyExists);
  auto other = store_->Create(Spec(), "req-2", "team-a", "alice");
  EXPECT_NE(other->job.id(), first->job.id());
  auto anonymous1 = store_->Create(Spec(), "", "team-a", "alice");
  auto anonymous2 = store_->Create(Spec(), "", "team-a", "alice");
  EXPECT_NE(anonymous1->job.id(), anonymous2->job.id());
}

TEST_P(JobStoreTest, JobsSurviveReopening) {
  const v1::JobSpec spec = Spec();
  auto created = store_->Create(spec, "req-1", "team-a", "alice");
  Reopen();
  auto job = store_->Get(created->job.id());
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(store_->Create(spec, "req-1", "team-a", "alice")->job.id(), created->job.id());
}

TEST_P(JobStoreTest, ExpiredLeaseRequeuesThenFailsAfterMaxAttempts) {
  const std::string id = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto lease = store_->LeaseNext("w1");
  ASSERT_TRUE(lease.ok() && lease->has_value());
  EXPECT_EQ((*lease)->job.attempt_count(), 1);
  EXPECT_EQ((*lease)->job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_FALSE(store_->LeaseNext("w2")->has_value()) << "one job, one lease";

  // Heartbeats keep the lease past its first time to live.
  now_ += absl::Seconds(8);
  ASSERT_TRUE(store_->Heartbeat(id, (*lease)->lease_id).ok());
  now_ += absl::Seconds(8);
  EXPECT_EQ(store_->ExpireLeases().value(), 0);

  // Silence expires it: back to the queue.
  now_ += absl::Seconds(11);
  EXPECT_EQ(store_->ExpireLeases().value(), 1);
  EXPECT_EQ(store_->Get(id)->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(store_->Heartbeat(id, (*lease)->lease_id).status().code(), absl::StatusCode::kFailedPrecondition)
      << "the old lease is gone";

  auto second = store_->LeaseNext("w2");
  ASSERT_TRUE(second->has_value());
  EXPECT_EQ((*second)->job.attempt_count(), 2);
  now_ += absl::Seconds(11);
  EXPECT_EQ(store_->ExpireLeases().value(), 1);
  auto job = store_->Get(id);
  EXPECT_EQ(job->state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(job->error().find("lease expired on attempt 2 of 2"), std::string::npos) << job->error();
  EXPECT_NE(job->error().find("w2"), std::string::npos) << job->error();
  EXPECT_TRUE(job->has_end_time());
  EXPECT_FALSE(store_->LeaseNext("w3")->has_value());
}

TEST_P(JobStoreTest, EventsAreSequencedWithoutGaps) {
  const std::string id = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto lease = store_->LeaseNext("w1").value().value();
  v1::JobEvent progress;
  progress.mutable_progress()->set_stage("pruning");
  progress.mutable_progress()->set_fraction(0.5);
  v1::JobEvent layer;
  layer.mutable_layer()->set_name("model.layers.0.mlp.up_proj.weight");
  EXPECT_EQ(store_->AppendEvents(id, lease.lease_id, {progress, layer}).value(), 4);
  EXPECT_EQ(store_->Get(id)->progress().fraction(), 0.5);

  v1::CompleteJobRequest done;
  done.set_job_id(id);
  done.set_lease_id(lease.lease_id);
  done.mutable_result()->set_achieved_sparsity(0.5);
  ASSERT_TRUE(store_->Complete(done).ok());

  auto events = Events(id);
  ASSERT_EQ(events.size(), 5u);
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1));
  EXPECT_EQ(events[0].state_change().state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(events[1].state_change().state(), v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(events[2].has_progress());
  EXPECT_TRUE(events[3].has_layer());
  EXPECT_EQ(events[4].state_change().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(store_->EventsAfter(id, 3, 10)->size(), 2u);
  EXPECT_EQ(store_->Get(id)->result().achieved_sparsity(), 0.5);
  // A finished job takes no more reports.
  EXPECT_EQ(store_->AppendEvents(id, lease.lease_id, {progress}).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(JobStoreTest, CancelQueuedAtOnceAndRunningThroughHeartbeat) {
  const std::string running = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  const std::string queued = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto lease = store_->LeaseNext("w1").value().value();
  ASSERT_EQ(lease.job.id(), running) << "oldest first";
  EXPECT_EQ(store_->Cancel(queued)->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(store_->LeaseNext("w2")->has_value());

  auto job = store_->Cancel(running);
  EXPECT_EQ(job->state(), v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(job->cancel_requested());
  EXPECT_TRUE(store_->Heartbeat(running, lease.lease_id).value());
  v1::CompleteJobRequest stopped;
  stopped.set_job_id(running);
  stopped.set_lease_id(lease.lease_id);
  stopped.set_cancelled(true);
  ASSERT_TRUE(store_->Complete(stopped).ok());
  EXPECT_EQ(store_->Get(running)->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(store_->Cancel(running).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->Cancel("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(JobStoreTest, ReleaseRequeuesWithoutCountingTheAttempt) {
  const std::string id = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto lease = store_->LeaseNext("w1").value().value();
  ASSERT_TRUE(store_->Release(id, lease.lease_id).ok());
  auto job = store_->Get(id);
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job->attempt_count(), 0);
  EXPECT_EQ(store_->LeaseNext("w2").value()->job.attempt_count(), 1);
}

TEST_P(JobStoreTest, ListPagesAndFiltersByState) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(store_->Create(Spec(), "", "team-a", "alice")->job.id());
  store_->Cancel(ids[1]).IgnoreError();
  std::vector<std::string> seen;
  std::string token;
  do {
    auto page = store_->List(v1::JOB_STATE_UNSPECIFIED, 2, token);
    ASSERT_TRUE(page.ok());
    EXPECT_LE(page->jobs.size(), 2u);
    for (const auto& j : page->jobs) seen.push_back(j.id());
    token = page->next_page_token;
  } while (!token.empty());
  EXPECT_EQ(seen, ids);
  auto cancelled = store_->List(v1::JOB_STATE_CANCELLED, 10, "");
  ASSERT_EQ(cancelled->jobs.size(), 1u);
  EXPECT_EQ(cancelled->jobs[0].id(), ids[1]);
  EXPECT_EQ(store_->List(v1::JOB_STATE_UNSPECIFIED, 10, "garbage").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(JobStoreTest, ListenersHearEveryCommittedChangeWithTheStateBefore) {
  std::vector<JobStore::Change> heard;
  store_->AddListener([&](const JobStore::Change& change) { heard.push_back(change); });
  const std::string id = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto lease = store_->LeaseNext("w1");
  ASSERT_TRUE(lease.ok() && lease->has_value());
  ASSERT_TRUE(store_->AppendEvents(id, (*lease)->lease_id, {Progress(0.5)}).ok());
  ASSERT_EQ(heard.size(), 3u);
  EXPECT_EQ(heard[0].job.id(), id);
  EXPECT_EQ(heard[0].previous_state, v1::JOB_STATE_UNSPECIFIED);
  EXPECT_EQ(heard[0].job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(heard[1].previous_state, v1::JOB_STATE_QUEUED);
  EXPECT_EQ(heard[1].job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(heard[1].job.attempt_count(), 1);
  EXPECT_EQ(heard[2].previous_state, v1::JOB_STATE_RUNNING);
  EXPECT_EQ(heard[2].job.progress().fraction(), 0.5);
}

TEST_P(JobStoreTest, CensusCountsJobsByStateAndTheWorkersHoldingLeases) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(store_->Create(Spec(), "", "team-a", "alice").ok());
  ASSERT_TRUE(store_->LeaseNext("w1").ok());
  ASSERT_TRUE(store_->LeaseNext("w1").ok());
  ASSERT_TRUE(store_->LeaseNext("w2").ok());
  auto census = store_->TakeCensus();
  ASSERT_TRUE(census.ok()) << census.status();
  EXPECT_EQ(census->jobs[v1::JOB_STATE_QUEUED], 1);
  EXPECT_EQ(census->jobs[v1::JOB_STATE_RUNNING], 3);
  EXPECT_EQ(census->jobs.count(v1::JOB_STATE_SUCCEEDED), 0u);
  EXPECT_EQ(census->busy_workers, 2);
}


TEST_P(JobStoreTest, RequestIdsAndListsAreScopedByTenant) {
  auto a = store_->Create(Spec(), "nightly", "team-a", "alice");
  auto b = store_->Create(Spec(0.7), "nightly", "team-b", "bob");
  ASSERT_TRUE(a.ok() && b.ok()) << b.status();
  EXPECT_TRUE(b->created) << "team-b's request id is its own, whatever team-a sent";
  EXPECT_EQ(a->job.tenant(), "team-a");
  EXPECT_EQ(a->job.creator(), "alice");
  EXPECT_EQ(store_->Get(b->job.id())->tenant(), "team-b");
  const auto ids = [&](const std::string& tenant) {
    std::vector<std::string> out;
    const auto page = store_->List(v1::JOB_STATE_UNSPECIFIED, 100, "", tenant).value();
    for (const auto& job : page.jobs) out.push_back(job.id());
    return out;
  };
  EXPECT_EQ(ids("team-a"), std::vector<std::string>{a->job.id()});
  EXPECT_EQ(ids("team-b"), std::vector<std::string>{b->job.id()});
  EXPECT_EQ(ids(""), (std::vector<std::string>{a->job.id(), b->job.id()}));
  EXPECT_EQ(store_->Create(Spec(), "", "", "nobody").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(JobStoreTest, QuotaCountsATenantsQueuedAndRunningJobs) {
  store_.reset();
  StoreOptions options;
  options.tenant_quota = 2;
  store_ = JobStore::Open(url_, options).value();
  ASSERT_TRUE(store_->Create(Spec(), "", "team-a", "alice").ok());
  ASSERT_TRUE(store_->LeaseNext("w1").ok());  // one running
  const std::string queued = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto over = store_->Create(Spec(), "", "team-a", "alice");
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(over.status().message(), "quota: tenant team-a has 2 queued or running jobs, as many as its quota (2) allows");
  EXPECT_TRUE(store_->Create(Spec(), "", "team-b", "bob").ok());
  ASSERT_TRUE(store_->Cancel(queued).ok());
  EXPECT_TRUE(store_->Create(Spec(), "", "team-a", "alice").ok());
}

// A store written before tenants existed opens with every job in the default tenant, its request
// ids still answering, and its events intact.
TEST_P(SqliteJobStoreTest, AVersion0StoreMigratesIntoTheDefaultTenant) {
  store_.reset();
  const std::string path = dir_ / "v0.db";
  const v1::JobSpec old_spec = Spec();
  {
    auto db = sql::Database::Open(path).value();
    auto session = db->Acquire().value();
    ASSERT_TRUE(session->Exec(R"sql(
      CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, request_id TEXT UNIQUE,
        state INTEGER NOT NULL, job BLOB NOT NULL, lease_id TEXT, worker_id TEXT, lease_expire_ms INTEGER,
        last_sequence INTEGER NOT NULL DEFAULT 0);
      CREATE INDEX jobs_by_state ON jobs(state, seq);
      CREATE TABLE events (job_id TEXT NOT NULL, sequence INTEGER NOT NULL, event BLOB NOT NULL,
        PRIMARY KEY (job_id, sequence)) WITHOUT ROWID;)sql").ok());
    v1::Job job;
    job.set_id("00000000000000aa");
    job.set_state(v1::JOB_STATE_QUEUED);
    *job.mutable_spec() = old_spec;
    auto insert = session->Prepare("INSERT INTO jobs (id, request_id, state, job, last_sequence) VALUES (?, ?, ?, ?, 1)");
    insert->Bind(1, job.id()).Bind(2, std::string("old-req")).Bind(3, int64_t{v1::JOB_STATE_QUEUED});
    insert->BindBlob(4, job.SerializeAsString());
    ASSERT_TRUE(insert->Run().ok());
    v1::JobEvent event;
    event.mutable_state_change()->set_state(v1::JOB_STATE_QUEUED);
    auto log = session->Prepare("INSERT INTO events (job_id, sequence, event) VALUES (?, 1, ?)");
    log->Bind(1, job.id()).BindBlob(2, event.SerializeAsString());
    ASSERT_TRUE(log->Run().ok());
  }
  store_ = JobStore::Open(path, StoreOptions()).value();
  auto job = store_->Get("00000000000000aa");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->tenant(), "default");
  EXPECT_EQ(store_->Create(old_spec, "old-req", "default", "")->job.id(), "00000000000000aa");
  // Its output is held like any other job's that has not ended.
  v1::JobSpec inside = Spec();
  inside.mutable_output()->set_uri(old_spec.output().uri() + "/nested");
  EXPECT_EQ(store_->Create(inside, "", "default", "").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store_->Create(Spec(), "old-req", "team-a", "alice")->created);
  EXPECT_EQ(Events("00000000000000aa").size(), 1u);
  // The next event continues the old log.
  auto lease = store_->LeaseNext("w1");
  ASSERT_TRUE(lease.ok() && lease->has_value());
  EXPECT_EQ((*lease)->job.id(), "00000000000000aa");
  EXPECT_EQ(Events("00000000000000aa").back().sequence(), 2);
  // Opening again is no second migration.
  store_.reset();
  store_ = JobStore::Open(path, StoreOptions()).value();
  EXPECT_EQ(store_->List(v1::JOB_STATE_UNSPECIFIED, 100, "", "default")->jobs.size(), 1u);
}


// Two jobs that have not ended cannot write into each other's output, however the URI is spelled;
// once one ends, its output is free.
TEST_P(JobStoreTest, AnOutputIsHeldUntilItsJobEnds) {
  v1::JobSpec first = Spec();
  first.mutable_output()->set_uri("s3://bucket/models/out");
  const std::string id = store_->Create(first, "", "team-a", "alice")->job.id();
  for (const char* output : {"s3://bucket/models/out/", "s3://bucket/models/out/sub", "s3://bucket/models",
                             "s3://bucket//models/./out"}) {
    v1::JobSpec second = Spec();
    second.mutable_output()->set_uri(output);
    auto mine = store_->Create(second, "", "team-a", "alice");
    EXPECT_EQ(mine.status().code(), absl::StatusCode::kFailedPrecondition) << output;
    EXPECT_EQ(mine.status().message(), absl::StrCat("spec.output.uri: ", CanonicalUri(output),
                                                    " overlaps the output of job ", id, ", which has not ended"));
    auto theirs = store_->Create(second, "", "team-b", "bob");
    EXPECT_EQ(theirs.status().message(), absl::StrCat("spec.output.uri: ", CanonicalUri(output),
                                                      " overlaps the output of another tenant's job, which has not ended"))
        << "another tenant's job id is not told";
  }
  v1::JobSpec sibling = Spec();
  sibling.mutable_output()->set_uri("s3://bucket/models/out2");
  EXPECT_TRUE(store_->Create(sibling, "", "team-b", "bob").ok());
  ASSERT_TRUE(store_->Cancel(id).ok());
  v1::JobSpec again = Spec();
  again.mutable_output()->set_uri("s3://bucket/models/out");
  EXPECT_TRUE(store_->Create(again, "", "team-b", "bob").ok());
}


// The server down longer than a lease's time to live: on restart a running lease is not expired at
// once (which burned a healthy worker's attempt), but gets two TTLs for the worker's next heartbeat.
TEST_P(JobStoreTest, ARestartGivesRunningLeasesOneTtlOfGrace) {
  const std::string id = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto lease = store_->LeaseNext("w1");
  ASSERT_TRUE(lease.ok() && lease->has_value());
  now_ += absl::Seconds(60);  // the server was down six TTLs
  Reopen();
  EXPECT_EQ(store_->ExpireLeases().value(), 0);
  now_ += absl::Seconds(15);  // within two TTLs
  EXPECT_EQ(store_->ExpireLeases().value(), 0);
  EXPECT_TRUE(store_->Heartbeat(id, (*lease)->lease_id).ok()) << "the worker's heartbeat finds its lease";
  now_ += absl::Seconds(11);
  EXPECT_EQ(store_->ExpireLeases().value(), 1) << "a worker that does not come back loses it after the grace";
  EXPECT_EQ(store_->Get(id)->attempt_count(), 1);
}


// A ReportEvents call whose answer was lost (the server restarted after committing) is retried by
// the worker; the numbered batch is applied once.
TEST_P(JobStoreTest, ARetriedEventBatchIsAppliedOnce) {
  const std::string id = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto lease = store_->LeaseNext("w1");
  ASSERT_TRUE(lease.ok() && lease->has_value());
  const std::string lease_id = (*lease)->lease_id;
  EXPECT_EQ(store_->AppendEvents(id, lease_id, {Progress(0.1), Progress(0.2)}, 1).value(), 4);
  EXPECT_EQ(store_->AppendEvents(id, lease_id, {Progress(0.1), Progress(0.2)}, 1).value(), 4) << "the retry";
  Reopen();
  EXPECT_EQ(store_->AppendEvents(id, lease_id, {Progress(0.1), Progress(0.2)}, 1).value(), 4) << "after a restart";
  EXPECT_EQ(store_->AppendEvents(id, lease_id, {Progress(0.3)}, 2).value(), 5);
  EXPECT_EQ(Events(id).size(), 5u);
  EXPECT_EQ(store_->AppendEvents(id, lease_id, {Progress(0.4)}, 0).value(), 6) << "unnumbered: always applied";
}

// A poison job: each crash of an engine process sends it back to the queue, until the second,
// which fails it rather than crash a third worker.
TEST_P(JobStoreTest, AJobThatCrashedMaxCrashesEnginesFailsWithTheLastCrash) {
  Reopen(/*max_attempts=*/5, /*max_crashes=*/2);
  const std::string id = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto crash = [&](const std::string& worker, const std::string& why) {
    auto lease = store_->LeaseNext(worker);
    ASSERT_TRUE(lease.ok() && lease->has_value());
    v1::CompleteJobRequest request;
    request.set_job_id(id);
    request.set_lease_id((*lease)->lease_id);
    request.set_crash(why);
    ASSERT_TRUE(store_->Complete(request).ok());
  };
  crash("w1", "the engine process was killed by signal 6 (SIGABRT, Aborted); last stage: pruning (block 2/8)");
  auto job = store_->Get(id);
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job->crash_count(), 1);
  const auto events = Events(id);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().state_change().message(),
            "attempt 1 crashed (crash 1 of at most 2) on worker w1: the engine process was killed by signal 6 "
            "(SIGABRT, Aborted); last stage: pruning (block 2/8)");

  crash("w2", "the engine process was killed by signal 11 (SIGSEGV, Segmentation fault); last stage: loading");
  job = store_->Get(id);
  EXPECT_EQ(job->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job->crash_count(), 2);
  EXPECT_EQ(job->attempt_count(), 2);
  EXPECT_NE(job->error().find("crash 2 of at most 2) on worker w2: the engine process was killed by signal 11"),
            std::string::npos)
      << job->error();
  EXPECT_FALSE(store_->LeaseNext("w3")->has_value()) << "no third worker gets it";
}

// The worker numbers its batches; one it gave up on shows in the log as a gap, not as silence.
TEST_P(JobStoreTest, ASkippedEventBatchIsLoggedAsAGap) {
  const std::string id = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto lease = store_->LeaseNext("w1");
  const std::string lease_id = (*lease)->lease_id;
  ASSERT_TRUE(store_->AppendEvents(id, lease_id, {Progress(0.1)}, 1).ok());
  ASSERT_TRUE(store_->AppendEvents(id, lease_id, {Progress(0.4)}, 4).ok());
  const auto events = Events(id);
  ASSERT_GE(events.size(), 3u);
  const auto& gap = events[events.size() - 2];
  ASSERT_TRUE(gap.has_report_gap());
  EXPECT_EQ(gap.report_gap().first_batch(), 2);
  EXPECT_EQ(gap.report_gap().last_batch(), 3);
  EXPECT_EQ(events.back().progress().fraction(), 0.4);
  v1::JobEvent forged;
  forged.mutable_report_gap()->set_first_batch(1);
  EXPECT_EQ(store_->AppendEvents(id, lease_id, {forged}, 5).status().code(), absl::StatusCode::kInvalidArgument);
}

// A worker that reports without end fills its job's log to the limit and no further; the state
// changes that end the job still go in.
TEST_P(JobStoreTest, AJobsLogStopsAtTheEventLimit) {
  const std::string id = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto lease = store_->LeaseNext("w1");
  const std::string lease_id = (*lease)->lease_id;
  const std::vector<v1::JobEvent> batch(1000, Progress(0.5));
  int64_t batches = 0;
  absl::Status refused;
  while (refused.ok()) refused = store_->AppendEvents(id, lease_id, batch, ++batches).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("a job keeps at most 100000"), std::string::npos) << refused;
  EXPECT_EQ(batches, 100) << "two state changes and 99 batches of 1000 fit";
  v1::CompleteJobRequest done;
  done.set_job_id(id);
  done.set_lease_id(lease_id);
  done.set_error("stopped");
  ASSERT_TRUE(store_->Complete(done).ok());
  EXPECT_EQ(store_->Get(id)->state(), v1::JOB_STATE_FAILED);
}

// ListJobs answers with summaries, in pages that end before kMaxListPageBytes.
TEST_P(JobStoreTest, ListGivesSummariesInPagesOfBoundedBytes) {
  const std::string id = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto lease = store_->LeaseNext("w1");
  v1::CompleteJobRequest done;
  done.set_job_id(id);
  done.set_lease_id((*lease)->lease_id);
  done.mutable_result()->set_achieved_sparsity(0.5);
  for (int i = 0; i < 1000; ++i) done.mutable_result()->add_layers()->set_name("model.layers.0.mlp.up_proj");
  ASSERT_TRUE(store_->Complete(done).ok());
  auto listed = store_->List(v1::JOB_STATE_SUCCEEDED, 10, "");
  ASSERT_EQ(listed->jobs.size(), 1u);
  EXPECT_EQ(listed->jobs[0].result().achieved_sparsity(), 0.5);
  EXPECT_EQ(listed->jobs[0].result().layers_size(), 0) << "the per-layer list stays with Get";
  EXPECT_EQ(store_->Get(id)->result().layers_size(), 1000);

  std::vector<std::string> big;
  for (int i = 0; i < 3; ++i) {
    v1::JobSpec spec = Spec();
    (*spec.mutable_labels())["bulk"] = std::string(1'500'000, 'x');  // the store takes what the service checked
    big.push_back(store_->Create(spec, "", "team-b", "bob")->job.id());
  }
  auto first = store_->List(v1::JOB_STATE_QUEUED, 10, "");
  ASSERT_EQ(first->jobs.size(), 2u) << "a third would pass 4 MiB";
  ASSERT_FALSE(first->next_page_token.empty());
  auto second = store_->List(v1::JOB_STATE_QUEUED, 10, first->next_page_token);
  ASSERT_EQ(second->jobs.size(), 1u);
  EXPECT_EQ(second->jobs[0].id(), big[2]);
  EXPECT_TRUE(second->next_page_token.empty());
}

// Retention: jobs that ended before the cutoff go with their events; running and recent ones stay.
TEST_P(JobStoreTest, RetentionDeletesJobsThatEndedBeforeTheCutoffWithTheirEvents) {
  const std::string old_job = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  ASSERT_TRUE(store_->Cancel(old_job).ok());
  const std::string queued = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  now_ += absl::Hours(24 * 40);
  const std::string recent = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  ASSERT_TRUE(store_->Cancel(recent).ok());
  int heard = 0;
  Retention retention(store_.get(), absl::Hours(24 * 30), [&](int n) { heard += n; });
  EXPECT_EQ(retention.Sweep(), 1);
  EXPECT_EQ(heard, 1);
  EXPECT_EQ(store_->Get(old_job).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Events(old_job).empty());
  EXPECT_EQ(store_->Get(queued)->state(), v1::JOB_STATE_QUEUED) << "forty days in the queue is no end";
  EXPECT_EQ(store_->Get(recent)->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(Events(recent).empty());
  EXPECT_EQ(retention.Sweep(), 0);
}

// A version 1 store learns its ended jobs' end times, so retention reaches them too.
TEST_P(SqliteJobStoreTest, AVersion1StoreGetsEndTimesForRetention) {
  const std::string ended = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  ASSERT_TRUE(store_->Cancel(ended).ok());
  store_.reset();
  {
    auto db = sql::Database::Open(dir_ / "jobs.db").value();
    ASSERT_TRUE(db->Acquire().value()->Exec("DROP INDEX jobs_by_end; ALTER TABLE jobs DROP COLUMN end_ms; PRAGMA user_version = 1;").ok());
  }
  Reopen();
  now_ += absl::Hours(24 * 31);
  EXPECT_EQ(store_->DeleteEndedBefore(now_ - absl::Hours(24 * 30), 10).value(), 1);
  EXPECT_EQ(store_->Get(ended).status().code(), absl::StatusCode::kNotFound);
}

// A full store (here its --max-db-bytes; a full disk reads the same) answers UNAVAILABLE, which the
// worker retries: the outcome waits for room instead of being dropped.
TEST_P(SqliteJobStoreTest, AFullStoreIsUnavailableAndTheOutcomeLandsOnceThereIsRoom) {
  Reopen(2, 2, /*max_db_bytes=*/256 << 10);
  const std::string id = store_->Create(Spec(), "", "team-a", "alice")->job.id();
  auto lease = store_->LeaseNext("w1");
  const std::string lease_id = (*lease)->lease_id;
  v1::JobEvent wordy = Progress(0.5);
  wordy.mutable_progress()->set_message(std::string(2000, 'm'));
  absl::Status full;
  for (int64_t batch = 1; full.ok() && batch < 1000; ++batch) {
    full = store_->AppendEvents(id, lease_id, std::vector<v1::JobEvent>(10, wordy), batch).status();
  }
  EXPECT_EQ(full.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(full.message().find("the job store is full"), std::string::npos) << full;
  v1::CompleteJobRequest done;
  done.set_job_id(id);
  done.set_lease_id(lease_id);
  done.mutable_result()->set_achieved_sparsity(0.5);
  for (int i = 0; i < 500; ++i) done.mutable_result()->add_layers()->set_name(std::string(200, 'l'));
  EXPECT_EQ(store_->Complete(done).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store_->Get(id)->state(), v1::JOB_STATE_RUNNING) << "nothing half-written";
  Reopen();  // room again (the operator raised the bound, or retention freed pages)
  ASSERT_TRUE(store_->Complete(done).ok());
  EXPECT_EQ(store_->Get(id)->state(), v1::JOB_STATE_SUCCEEDED);
}

}  // namespace
}  // namespace shears::server

namespace shears::server {
namespace {

// Several server replicas on one PostgreSQL database: what each store does must hold when another
// does the same at the same moment.
class PostgresReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto url = shears::testing::NewTestDatabase();
    ASSERT_TRUE(url.ok()) << url.status();
    url_ = *url;
    for (int i = 0; i < 2; ++i) replicas_.push_back(Open());
  }

  std::unique_ptr<JobStore> Open() {
    StoreOptions options;
    options.lease_ttl = absl::Seconds(10);
    options.clock = [this] { return now_; };
    auto store = JobStore::Open(url_, options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  v1::JobSpec Spec() {
    v1::JobSpec spec;
    spec.set_model_uri("file:///models/m");
    spec.set_method(v1::METHOD_MAGNITUDE);
    spec.set_target_sparsity(0.5);
    spec.mutable_output()->set_uri(absl::StrCat("file:///out/", outputs_++));
    return spec;
  }

  // How many of the job's state changes say `text`.
  int StateChangesSaying(const std::string& id, const std::string& text) {
    int n = 0;
    const auto events = replicas_[0]->EventsAfter(id, 0, 1000).value();
    for (const auto& e : events) {
      n += e.has_state_change() && e.state_change().message().find(text) != std::string::npos;
    }
    return n;
  }

  std::string url_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  std::vector<std::unique_ptr<JobStore>> replicas_;
  int outputs_ = 0;
};

TEST_F(PostgresReplicasTest, ReplicasLeasingAtOnceHandOutEachJobOnce) {
  std::set<std::string> created;
  for (int i = 0; i < 40; ++i) created.insert(replicas_[i % 2]->Create(Spec(), "", "team-a", "alice")->job.id());
  std::vector<std::string> leased[2];
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      for (;;) {
        auto lease = replicas_[r]->LeaseNext(absl::StrCat("w", r));
        ASSERT_TRUE(lease.ok()) << lease.status();
        if (!lease->has_value()) return;
        leased[r].push_back((*lease)->job.id());
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> all(leased[0].begin(), leased[0].end());
  all.insert(leased[1].begin(), leased[1].end());
  EXPECT_EQ(all, created);
  EXPECT_EQ(leased[0].size() + leased[1].size(), 40u) << "no job leased twice";
  for (const auto& id : created) EXPECT_EQ(StateChangesSaying(id, "attempt 1 of 3"), 1) << id;
}

TEST_F(PostgresReplicasTest, EveryReplicaExpiringAtOnceRequeuesEachLeaseOnce) {
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    ids.push_back(replicas_[0]->Create(Spec(), "", "team-a", "alice")->job.id());
    ASSERT_TRUE(replicas_[1]->LeaseNext("w").value().has_value());
  }
  now_ += absl::Seconds(11);
  int expired[2] = {0, 0};
  std::thread other([&] { expired[1] = replicas_[1]->ExpireLeases().value(); });
  expired[0] = replicas_[0]->ExpireLeases().value();
  other.join();
  EXPECT_EQ(expired[0] + expired[1], 20);
  for (const auto& id : ids) {
    EXPECT_EQ(replicas_[0]->Get(id)->state(), v1::JOB_STATE_QUEUED);
    EXPECT_EQ(StateChangesSaying(id, "lease expired"), 1) << id;
  }
}

TEST_F(PostgresReplicasTest, ACreationRetriedOnAnotherReplicaFindsTheSameJob) {
  const v1::JobSpec spec = Spec();
  for (int round = 0; round < 10; ++round) {
    const std::string request = absl::StrCat("req-", round);
    absl::StatusOr<JobStore::Created> made[2];
    std::thread other([&] { made[1] = replicas_[1]->Create(spec, request, "team-a", "alice"); });
    made[0] = replicas_[0]->Create(spec, request, "team-a", "alice");
    other.join();
    ASSERT_TRUE(made[0].ok() && made[1].ok()) << made[0].status() << " " << made[1].status();
    EXPECT_EQ(made[0]->job.id(), made[1]->job.id());
    EXPECT_NE(made[0]->created, made[1]->created) << "exactly one created it";
    if (round % 2 == 0) ASSERT_TRUE(replicas_[0]->Cancel(made[0]->job.id()).ok());  // frees the output
    else ASSERT_TRUE(replicas_[1]->Cancel(made[0]->job.id()).ok());
  }
}

TEST_F(PostgresReplicasTest, AReplicaHearsWhatAnotherCommittedAndNotItsOwnTwice) {
  absl::Mutex mu;
  std::vector<JobStore::Change> heard[2];
  for (int r = 0; r < 2; ++r) {
    replicas_[r]->AddListener([&, r](const JobStore::Change& change) {
      absl::MutexLock lock(&mu);
      heard[r].push_back(change);
    });
  }
  const std::string id = replicas_[0]->Create(Spec(), "", "team-a", "alice")->job.id();
  auto heard_remote = [&] {
    for (const auto& c : heard[1]) {
      if (c.remote && c.job.id() == id && c.job.state() == v1::JOB_STATE_QUEUED) return true;
    }
    return false;
  };
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&heard_remote), absl::Seconds(10))) << "replica 1 never heard";
  }
  absl::SleepFor(absl::Milliseconds(300));  // time for an echo to arrive, if one were to
  absl::MutexLock lock(&mu);
  ASSERT_EQ(heard[0].size(), 1u) << "its own change, once, as it committed";
  EXPECT_FALSE(heard[0][0].remote);
  EXPECT_EQ(heard[0][0].previous_state, v1::JOB_STATE_UNSPECIFIED);
}

TEST_F(PostgresReplicasTest, ConnectionsLostToARestartAreReopenedAndNothingIsLost) {
  absl::Mutex mu;
  bool told_to_look_again = false;
  replicas_[1]->AddListener([&](const JobStore::Change& change) {
    absl::MutexLock lock(&mu);
    if (change.remote && change.job.id().empty()) told_to_look_again = true;
  });
  const std::string id = replicas_[0]->Create(Spec(), "", "team-a", "alice")->job.id();
  // What a PostgreSQL restart or a failover does to every open connection: here those to this
  // test's database alone, not the servers of tests running beside it on the same test server.
  const size_t name = url_.find(":///") + 4;  // postgresql:///NAME?host=...
  const std::string database = url_.substr(name, url_.find('?') - name);
  ASSERT_TRUE(shears::testing::PostgresAdmin(absl::StrCat("SELECT pg_terminate_backend(pid) FROM pg_stat_activity ",
                                                          "WHERE application_name = 'shears-server' AND datname = '",
                                                          database, "'"))
                  .ok());
  // The callers do not see it: a session whose connection turns out lost before its first
  // statement did anything is retried on a new one.
  auto job = replicas_[0]->Get(id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
  auto lease = replicas_[1]->LeaseNext("w");
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_TRUE(lease->has_value());
  // The listening connection comes back, and says that announcements may have been missed.
  absl::MutexLock lock(&mu);
  EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&told_to_look_again), absl::Seconds(10)));
}

// A statement that cannot have its row within --db-timeout (another transaction holds it) gives
// up UNAVAILABLE, changing nothing; a call meanwhile waits for the pool's one connection rather
// than fail at once.
TEST_F(PostgresReplicasTest, AStatementThatWaitsPastTheTimeoutIsUnavailableAndChangesNothing) {
  StoreOptions options;
  options.database.pool_size = 1;
  options.database.timeout = absl::Seconds(1);
  auto store = JobStore::Open(url_, options);
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string id = (*store)->Create(Spec(), "", "team-a", "alice")->job.id();
  shears::testing::PostgresConnection holder(url_);
  ASSERT_TRUE(holder.Exec(absl::StrCat("BEGIN; SELECT id FROM jobs WHERE id = '", id, "' FOR UPDATE")).ok());
  absl::Status cancelled;
  std::thread cancel([&] { cancelled = (*store)->Cancel(id).status(); });
  absl::SleepFor(absl::Milliseconds(500));
  auto job = (*store)->Get(id);  // waits (up to 1 s) for the connection the cancellation holds
  cancel.join();
  EXPECT_EQ(cancelled.code(), absl::StatusCode::kUnavailable) << cancelled;
  EXPECT_NE(cancelled.message().find("the job store is busy (postgresql 57014"), std::string::npos) << cancelled;
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
  ASSERT_TRUE(holder.Exec("ROLLBACK").ok());
  EXPECT_EQ((*store)->Cancel(id)->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(StateChangesSaying(id, "cancelled"), 1) << "the timed-out one left no trace";
}

TEST_F(PostgresReplicasTest, ReplicasStartingTogetherMigrateOnce) {
  auto url = shears::testing::NewTestDatabase();
  ASSERT_TRUE(url.ok()) << url.status();
  url_ = *url;
  std::vector<std::unique_ptr<JobStore>> stores(4);
  std::vector<std::thread> threads;
  for (auto& store : stores) threads.emplace_back([&] { store = Open(); });
  for (auto& t : threads) t.join();
  for (auto& store : stores) ASSERT_NE(store, nullptr);
  const std::string id = stores[0]->Create(Spec(), "", "team-a", "alice")->job.id();
  EXPECT_EQ(stores[3]->Get(id)->id(), id);
}

TEST_F(PostgresReplicasTest, AStoreNewerThanTheServerIsRefused) {
  ASSERT_TRUE(replicas_[0]->Create(Spec(), "", "team-a", "alice").ok());
  replicas_.clear();
  {
    auto db = sql::Database::Open(url_).value();
    ASSERT_TRUE(db->Acquire().value()->Exec("UPDATE shears_schema SET version = 99").ok());
  }
  StoreOptions options;
  auto store = JobStore::Open(url_, options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.status().message(), "job store schema version 99 is newer than this server's (2)");
}

// Every connection lent: the next caller waits --db-timeout, then hears which limit it met.
TEST(PostgresStore, APoolWhoseConnectionsAreAllLentAnswersUnavailableAfterTheTimeout) {
  auto url = shears::testing::NewTestDatabase();
  ASSERT_TRUE(url.ok()) << url.status();
  sql::DatabaseOptions options;
  options.pool_size = 2;
  options.timeout = absl::Seconds(1);
  auto db = sql::Database::Open(*url, options);
  ASSERT_TRUE(db.ok()) << db.status();
  std::optional<sql::Session> first(std::move((*db)->Acquire()).value());
  std::optional<sql::Session> second(std::move((*db)->Acquire()).value());
  auto third = (*db)->Acquire();
  EXPECT_EQ(third.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(third.status().message(),
            "the job store is busy: all 2 connections (--db-pool) were in use for 1s; try again");
  first.reset();  // one back: the next caller has it
  auto again = (*db)->Acquire();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)->Exec("SELECT 1").ok());
}

TEST(PostgresStore, AnUnreachableServerFailsTheStartNamingIt) {
  StoreOptions options;
  options.database.timeout = absl::Seconds(2);
  auto store = JobStore::Open("postgresql:///nowhere?host=/nonexistent&user=postgres", options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(store.status().message().find("the job store is unreachable (postgresql: "), std::string::npos)
      << store.status();
  EXPECT_EQ(JobStore::Open("mysql://db/jobs", options).status().message(),
            "--db mysql://db/jobs: a path, sqlite://PATH or postgresql://... (no other store)");
  EXPECT_EQ(sql::RedactUrl("postgresql://shears:s3cret@db:5432/jobs?sslmode=require&password=other"),
            "postgresql://shears:***@db:5432/jobs?sslmode=require&password=***");
}

}  // namespace
}  // namespace shears::server
