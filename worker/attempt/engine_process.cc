#include "worker/attempt/engine_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "worker/attempt/pipe_messages.h"

namespace shears::worker {
namespace {

constexpr int kChildControlFd = 0;
constexpr int kChildReportsFd = 3;

absl::Status ErrnoError(const char* what) { return absl::InternalError(absl::StrCat(what, ": ", strerror(errno))); }

// The child's side of fork, up to exec: async-signal-safe calls only, since the worker has other
// threads whose locks the child would inherit held.
[[noreturn]] void ExecEngine(int control, int reports, pid_t worker, const char* binary, char* const argv[]) {
  if (dup2(control, kChildControlFd) < 0 || dup2(reports, kChildReportsFd) < 0) _exit(127);
  // dup2 onto the same number leaves close-on-exec set.
  if (control == kChildControlFd) fcntl(kChildControlFd, F_SETFD, 0);
  if (reports == kChildReportsFd) fcntl(kChildReportsFd, F_SETFD, 0);
  syscall(SYS_close_range, kChildReportsFd + 1, ~0U, 0);
  // Dies with the worker (killed -9 included), which is the one thread that started it.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != worker) _exit(127);
  execv(binary, argv);
  _exit(127);
}

// How a process that sent no outcome ended, and where it was.
std::string DescribeCrash(int wait_status, const std::string& stage, const absl::Status& pipe_error) {
  std::string how;
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    const char* abbrev = sigabbrev_np(sig);
    how = absl::StrCat("the engine process was killed by signal ", sig, " (SIG", abbrev != nullptr ? abbrev : "?",
                       ", ", strsignal(sig), ")");
    if (sig == SIGKILL) absl::StrAppend(&how, "; the kernel's OOM killer sends it when memory runs out");
  } else if (WIFEXITED(wait_status)) {
    how = absl::StrCat("the engine process exited with status ", WEXITSTATUS(wait_status), " without an outcome");
  } else {
    how = "the engine process ended without an outcome";
  }
  if (!pipe_error.ok()) absl::StrAppend(&how, " (", pipe_error.message(), ")");
  return absl::StrCat(how, "; last stage: ", stage);
}

class EngineProcess {
 public:
  EngineProcess(const RunContext& context) : context_(context) {}

  AttemptOutcome Run(const std::string& binary, const std::vector<std::string>& command,
                     const v1::AttemptStart& start) {
    AttemptOutcome outcome;
    int control[2], reports[2];
    if (pipe2(control, O_CLOEXEC) != 0) return Failed(ErrnoError("pipe"));
    if (pipe2(reports, O_CLOEXEC) != 0) {
      close(control[0]);
      close(control[1]);
      return Failed(ErrnoError("pipe"));
    }
    std::vector<char*> argv;
    for (const auto& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    const pid_t worker = getpid();
    const pid_t pid = fork();
    if (pid == 0) ExecEngine(control[0], reports[1], worker, binary.c_str(), argv.data());
    close(control[0]);
    close(reports[1]);
    if (pid < 0) {
      close(control[1]);
      close(reports[0]);
      return Failed(ErrnoError("fork"));
    }
    control_ = control[1];
    v1::AttemptControl first;
    *first.mutable_start() = start;
    // A child that died at once shows as an ended pipe below.
    WriteMessage(control_, first).IgnoreError();
    const absl::Status pipe_error = Serve(reports[0], outcome);
    if (!pipe_error.ok()) kill(pid, SIGKILL);  // a child that garbles the pipe is not trusted further
    close(reports[0]);
    close(control_);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!answered_) {
      outcome.crash = DescribeCrash(status, stage_, pipe_error);
      outcome.result = absl::InternalError(outcome.crash);
    }
    return outcome;
  }

 private:
  static AttemptOutcome Failed(absl::Status status) {
    AttemptOutcome outcome;
    outcome.result = absl::UnavailableError(absl::StrCat("could not start the engine process: ", status.message()));
    return outcome;
  }

  // Reads reports until the child closes its end.
  absl::Status Serve(int reports, AttemptOutcome& outcome) {
    bool cancel_sent = false;
    for (;;) {
      if (!cancel_sent && context_.cancelled && context_.cancelled()) {
        v1::AttemptControl cancel;
        cancel.set_cancel(true);
        WriteMessage(control_, cancel).IgnoreError();
        cancel_sent = true;
      }
      // Polled, so that a cancellation reaches a child that reports nothing for a long block.
      pollfd ready{reports, POLLIN, 0};
      const int n = poll(&ready, 1, 200);
      if (n < 0 && errno != EINTR) return ErrnoError("poll");
      if (n <= 0) continue;
      v1::AttemptReport report;
      auto got = ReadMessage(reports, &report);
      if (!got.ok()) return got.status();
      if (!*got) return absl::OkStatus();
      switch (report.kind_case()) {
        case v1::AttemptReport::kEvent:
          if (report.event().has_progress()) {
            const auto& progress = report.event().progress();
            stage_ = absl::StrCat(progress.stage(), " (", progress.message(), ")");
          } else if (report.event().has_layer()) {
            // Layers report as they finish, before their block's progress.
            stage_ = absl::StrCat(stage_.substr(0, stage_.find(", after layer ")), ", after layer ",
                                  report.event().layer().name());
          }
          if (context_.on_event) context_.on_event(report.event());
          break;
        case v1::AttemptReport::kConfirmLease: {
          const absl::Status st = context_.confirm_lease ? context_.confirm_lease() : absl::OkStatus();
          v1::AttemptControl answer;
          answer.mutable_lease()->set_code(static_cast<int>(st.code()));
          answer.mutable_lease()->set_message(std::string(st.message()));
          WriteMessage(control_, answer).IgnoreError();
          break;
        }
        case v1::AttemptReport::kTransferred:
          if (context_.storage.counters.downloaded) context_.storage.counters.downloaded(report.transferred().downloaded());
          if (context_.storage.counters.uploaded) context_.storage.counters.uploaded(report.transferred().uploaded());
          break;
        case v1::AttemptReport::kResult:
          outcome.result = report.result();
          answered_ = true;
          break;
        case v1::AttemptReport::kError:
          outcome.result = absl::Status(static_cast<absl::StatusCode>(report.error().code()), report.error().message());
          answered_ = true;
          break;
        default:
          return absl::DataLossError("an attempt report of no known kind");
      }
    }
  }

  const RunContext& context_;
  int control_ = -1;
  std::string stage_ = "starting";
  bool answered_ = false;
};

}  // namespace

AttemptOutcome RunInEngineProcess(const std::string& binary, const std::vector<std::string>& argv,
                                  const v1::AttemptStart& start, const RunContext& context) {
  return EngineProcess(context).Run(binary, argv, start);
}

}  // namespace shears::worker
