#include "worker/attempt/engine_main.h"

#include <unistd.h>

#include <atomic>
#include <iostream>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "shears/v1/attempt.pb.h"
#include "worker/attempt/pipe_messages.h"
#include "worker/job_runner.h"

namespace shears::worker {
namespace {

constexpr int kControlFd = 0;
constexpr int kReportsFd = 3;

// The worker's end of the pipe, shared by the pruning thread and the storage's transfer callbacks.
class WorkerPipe {
 public:
  void Report(const v1::AttemptReport& report) ABSL_LOCKS_EXCLUDED(write_mu_) {
    absl::MutexLock lock(&write_mu_);
    // A worker that went away: the kernel ends this process with it (PR_SET_PDEATHSIG).
    WriteMessage(kReportsFd, report).IgnoreError();
  }

  // Reads the worker's control messages until the pipe ends, on a thread of its own.
  void Listen() {
    std::thread([this] {
      for (;;) {
        v1::AttemptControl control;
        auto got = ReadMessage(kControlFd, &control);
        absl::MutexLock lock(&mu_);
        if (!got.ok() || !*got) {
          gone_ = true;
          return;
        }
        if (control.cancel()) cancelled_ = true;
        if (control.has_lease()) {
          lease_ = absl::Status(static_cast<absl::StatusCode>(control.lease().code()), control.lease().message());
        }
      }
    }).detach();  // blocked in read until the process ends
  }

  bool Cancelled() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return cancelled_ || gone_;
  }

  // The fence, answered by the worker (which asks the server).
  absl::Status ConfirmLease() ABSL_LOCKS_EXCLUDED(mu_) {
    v1::AttemptReport ask;
    ask.set_confirm_lease(true);
    Report(ask);
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](WorkerPipe* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) { return self->lease_.has_value() || self->gone_; },
        this));
    if (!lease_.has_value()) return absl::AbortedError("the worker went away");
    const absl::Status answer = *lease_;
    lease_.reset();
    return answer;
  }

 private:
  absl::Mutex write_mu_;
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> lease_ ABSL_GUARDED_BY(mu_);
};

[[noreturn]] void End(int status) {
  std::cout.flush();
  std::cerr.flush();
  _exit(status);
}

}  // namespace

void ServeAttempt(const EngineSettings& settings) {
  v1::AttemptControl first;
  auto got = ReadMessage(kControlFd, &first);
  if (!got.ok() || !*got || !first.has_start()) {
    std::cerr << "shears-worker attempt: no start message on standard input; the worker starts this command"
              << std::endl;
    End(2);
  }
  const v1::AttemptStart& start = first.start();
  static WorkerPipe worker;  // outlives the detached listener until _exit
  worker.Listen();

  RunContext context;
  context.job_id = start.job_id();
  context.work_dir = settings.work_dir;
  context.device = settings.device;
  context.max_dataset_bytes = settings.max_dataset_bytes;
  context.on_event = [](const v1::JobEvent& event) {
    v1::AttemptReport report;
    *report.mutable_event() = event;
    worker.Report(report);
  };
  context.cancelled = [] { return worker.Cancelled(); };
  context.confirm_lease = [] { return worker.ConfirmLease(); };
  auto storage = TenantStorage(settings.storage, settings.uri_policy, settings.tenant_credentials, start.tenant());
  absl::StatusOr<v1::JobResult> result = absl::UnknownError("not run");
  if (!storage.ok()) {
    result = storage.status();
  } else {
    context.storage = *std::move(storage);
    context.storage.counters.downloaded = [](int64_t bytes) {
      v1::AttemptReport report;
      report.mutable_transferred()->set_downloaded(bytes);
      worker.Report(report);
    };
    context.storage.counters.uploaded = [](int64_t bytes) {
      v1::AttemptReport report;
      report.mutable_transferred()->set_uploaded(bytes);
      worker.Report(report);
    };
    result = RunJob(start.spec(), context);
  }
  v1::AttemptReport outcome;
  if (result.ok()) {
    *outcome.mutable_result() = *std::move(result);
  } else {
    outcome.mutable_error()->set_code(static_cast<int>(result.status().code()));
    outcome.mutable_error()->set_message(std::string(result.status().message()));
  }
  worker.Report(outcome);
  End(0);
}

}  // namespace shears::worker
