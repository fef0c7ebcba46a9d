#pragma once
// SIGINT and SIGTERM taken synchronously: blocked in every thread from the start of main, and
// waited for by one thread, so that "stop" always means a clean stop, never a half-written file.

#include <functional>

namespace shears {

// Call first thing in main, before any thread starts: threads inherit the mask.
void BlockTerminationSignals();
// Blocks until SIGINT or SIGTERM arrives; returns the signal.
int WaitForTerminationSignal();
// As WaitForTerminationSignal, and runs `on_reload` for each SIGHUP meanwhile (a process that
// reloads its configuration on SIGHUP; call BlockReloadSignal first thing in main too).
void BlockReloadSignal();
int WaitForTerminationSignal(const std::function<void()>& on_reload);
// Runs `on_signal` on a detached thread of its own once SIGINT or SIGTERM arrives.
void OnTermination(std::function<void(int)> on_signal);

}  // namespace shears
