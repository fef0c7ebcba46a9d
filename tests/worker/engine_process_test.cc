// The worker's side of the attempt pipe against stand-in engine processes: how each way of dying
// reads in the job's reason, and a garbled pipe.
#include "worker/attempt/engine_process.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include "worker/attempt/pipe_messages.h"

namespace shears::worker {
namespace {

AttemptOutcome RunShell(const std::string& script, const RunContext& context = {}) {
  v1::AttemptStart start;
  start.set_job_id("job-1");
  return RunInEngineProcess("/bin/sh", {"sh", "-c", script}, start, context);
}

TEST(PipeMessages, RoundTripAndEndsAreToldApart) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  v1::AttemptReport sent;
  sent.mutable_event()->mutable_progress()->set_stage("pruning");
  ASSERT_TRUE(WriteMessage(fds[1], sent).ok());
  ASSERT_EQ(write(fds[1], "\x05\x00\x00\x00\x01", 5), 5);  // a frame cut short
  close(fds[1]);
  v1::AttemptReport got;
  auto read = ReadMessage(fds[0], &got);
  ASSERT_TRUE(read.ok() && *read);
  EXPECT_EQ(got.event().progress().stage(), "pruning");
  read = ReadMessage(fds[0], &got);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(read.status().message(), "the attempt pipe ended inside a message");
  close(fds[0]);
}

TEST(EngineProcess, ASignalIsACrashNamingItAndTheLastStage) {
  const AttemptOutcome outcome = RunShell("kill -SEGV $$");
  EXPECT_EQ(outcome.crash,
            "the engine process was killed by signal 11 (SIGSEGV, Segmentation fault); last stage: starting");
  EXPECT_FALSE(outcome.result.ok());
}

TEST(EngineProcess, SigkillMentionsTheOomKiller) {
  const AttemptOutcome outcome = RunShell("kill -KILL $$");
  EXPECT_NE(outcome.crash.find("signal 9 (SIGKILL, Killed); the kernel's OOM killer sends it"), std::string::npos)
      << outcome.crash;
}

TEST(EngineProcess, AnExitWithoutAnOutcomeIsACrash) {
  EXPECT_EQ(RunShell("exit 3").crash, "the engine process exited with status 3 without an outcome; last stage: starting");
}

TEST(EngineProcess, AGarbledPipeKillsTheEngineAndSaysWhy) {
  const AttemptOutcome outcome = RunShell("printf '\\377\\377\\377\\377' >&3; sleep 5 >/dev/null 2>&1");
  EXPECT_EQ(outcome.crash,
            "the engine process was killed by signal 9 (SIGKILL, Killed); the kernel's OOM killer sends it when "
            "memory runs out (an attempt message claims 4294967295 bytes); last stage: starting");
}

TEST(EngineProcess, AMissingEngineBinaryIsACrashWithStatus127) {
  v1::AttemptStart start;
  const AttemptOutcome outcome = RunInEngineProcess("/nonexistent/shears-worker", {"shears-worker", "attempt"}, start, {});
  EXPECT_EQ(outcome.crash, "the engine process exited with status 127 without an outcome; last stage: starting");
}

}  // namespace
}  // namespace shears::worker
