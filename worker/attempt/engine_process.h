#pragma once
// Each attempt runs in an engine process of its own (`shears-worker attempt`, started fresh with
// fork and exec, so that neither gRPC's threads nor an initialised CUDA cross a fork): an abort in
// LibTorch, a segfault or the kernel's OOM killer ends that process, and the worker, still alive,
// reports the crash and leases the next job. The two talk over the pipe of attempt.proto.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shears/v1/attempt.pb.h"
#include "shears/v1/job.pb.h"
#include "worker/job_runner.h"

namespace shears::worker {

struct AttemptOutcome {
  absl::StatusOr<v1::JobResult> result = absl::UnknownError("not run");
  // Set when the engine process ended without an outcome: how it ended (the signal, or the exit
  // status) and the last stage it reported. `result` then holds the same as an error.
  std::string crash;
};

// Starts `binary` with `argv` (argv[0] is the name `ps` shows; standard input and descriptor 3
// carry the pipe), sends it `start`, and
// serves it until it ends: its events go to context.on_event, its fence through
// context.confirm_lease, its transferred bytes to context.storage.counters, and a cancellation
// (context.cancelled() turning true) down to it. The process is killed when the worker dies.
AttemptOutcome RunInEngineProcess(const std::string& binary, const std::vector<std::string>& argv,
                                  const v1::AttemptStart& start, const RunContext& context);

}  // namespace shears::worker
