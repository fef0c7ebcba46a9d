#include "common/termination.h"

#include <pthread.h>

#include <csignal>
#include <thread>

namespace shears {
namespace {

sigset_t TerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  return signals;
}

}  // namespace

void BlockTerminationSignals() {
  const sigset_t signals = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

int WaitForTerminationSignal() {
  const sigset_t signals = TerminationSignals();
  int sig = 0;
  sigwait(&signals, &sig);
  return sig;
}

void BlockReloadSignal() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

int WaitForTerminationSignal(const std::function<void()>& on_reload) {
  sigset_t signals = TerminationSignals();
  sigaddset(&signals, SIGHUP);
  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig != SIGHUP) return sig;
    on_reload();
  }
}

void OnTermination(std::function<void(int)> on_signal) {
  std::thread([on_signal = std::move(on_signal)] { on_signal(WaitForTerminationSignal()); }).detach();
}

}  // namespace shears
