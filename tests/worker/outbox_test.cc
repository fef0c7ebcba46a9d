// The worker's outbox on disk: what a worker that died owed the server, found again by the next.
#include "worker/outbox.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/test_util.h"

namespace shears::worker {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

v1::JobEvent Layer(const std::string& name) {
  v1::JobEvent event;
  event.mutable_layer()->set_name(name);
  return event;
}

TEST(Outbox, WhatWasNotAnsweredIsFoundAgainInOrder) {
  TempDir dir;
  {
    Outbox outbox(dir.path(), "job-1", "lease-1");
    v1::ReportEventsRequest first;
    first.set_batch(1);
    for (const char* name : {"a", "b", "c"}) {
      ASSERT_TRUE(outbox.Append(Layer(name)).ok());
      *first.add_events() = Layer(name);
    }
    ASSERT_TRUE(outbox.AddBatch(first).ok());
    ASSERT_TRUE(outbox.Done(1).ok());
    v1::ReportEventsRequest second;
    second.set_batch(2);
    *second.add_events() = Layer("d");
    ASSERT_TRUE(outbox.Append(Layer("d")).ok());
    ASSERT_TRUE(outbox.AddBatch(second).ok());
    ASSERT_TRUE(outbox.Append(Layer("e")).ok());
    ASSERT_TRUE(outbox.Append(Layer("f")).ok());
    v1::CompleteJobRequest outcome;
    outcome.set_job_id("job-1");
    outcome.set_error("out of memory");
    ASSERT_TRUE(outbox.SetOutcome(outcome).ok());
  }  // the worker dies here
  const auto left = Outbox::FindLeft(dir.path());
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].record.job_id(), "job-1");
  ASSERT_EQ(left[0].record.batches_size(), 1) << "batch 1 was answered";
  EXPECT_EQ(left[0].record.batches(0).batch(), 2);
  EXPECT_EQ(left[0].record.last_batch(), 2);
  ASSERT_EQ(left[0].unbatched.size(), 2u);
  EXPECT_EQ(left[0].unbatched[0].layer().name(), "e");
  EXPECT_EQ(left[0].unbatched[1].layer().name(), "f");
  EXPECT_EQ(left[0].record.outcome().error(), "out of memory");
  Outbox::Remove(dir.path(), "lease-1");
  EXPECT_TRUE(Outbox::FindLeft(dir.path()).empty());
  EXPECT_TRUE(fs::is_empty(dir / "outbox"));
}

// A kill mid-append leaves half an event at the end of the file; a kill mid-save, a temporary.
TEST(Outbox, ATornAppendAndAnUnreadableRecordAreDropped) {
  TempDir dir;
  {
    Outbox outbox(dir.path(), "job-1", "lease-1");
    ASSERT_TRUE(outbox.Append(Layer("a")).ok());
  }
  std::ofstream(dir / "outbox/lease-1.events", std::ios::app | std::ios::binary) << std::string("\x40\x00\x00\x00xy", 6);
  std::ofstream(dir / "outbox/lease-2.pb") << "not a record";
  std::ofstream(dir / "outbox/lease-3.pb.tmp-123") << "half";
  const auto left = Outbox::FindLeft(dir.path());
  ASSERT_EQ(left.size(), 1u);
  ASSERT_EQ(left[0].unbatched.size(), 1u);
  EXPECT_EQ(left[0].unbatched[0].layer().name(), "a");
  EXPECT_FALSE(fs::exists(dir / "outbox/lease-2.pb"));
  EXPECT_FALSE(fs::exists(dir / "outbox/lease-3.pb.tmp-123"));
}

TEST(Outbox, RemoveTakesBothFiles) {
  TempDir dir;
  Outbox outbox(dir.path(), "job-1", "lease-1");
  ASSERT_TRUE(outbox.Append(Layer("a")).ok());
  outbox.Remove();
  EXPECT_TRUE(fs::is_empty(dir / "outbox"));
}

}  // namespace
}  // namespace shears::worker
