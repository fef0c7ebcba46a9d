#pragma once
// Runs `shears-worker run-local` in a child process and measures it: the child's own peak
// resident memory (wait4's rusage), not the benchmark's.

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

namespace shears::bench {

struct Run {
  long peak_rss_kib;
  double seconds;
  int status;  // the exit code, or 128 + the signal
};

// stdout and stderr of the worker go to `log`.
inline Run RunWorker(const std::string& worker, const std::string& spec, const std::string& work_dir,
                     const std::string& log) {
  // The child must not inherit, and write again, what the benchmark has buffered.
  std::cout.flush();
  std::fflush(nullptr);
  const auto start = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    FILE* out = std::freopen(log.c_str(), "w", stdout);
    (void)out;
    dup2(STDOUT_FILENO, STDERR_FILENO);
    execl(worker.c_str(), worker.c_str(), "run-local", "--spec", spec.c_str(), "--work-dir", work_dir.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {usage.ru_maxrss, seconds, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)};
}

// The JobResult that run-local prints last, as JSON (discarded when the run printed none).
inline nlohmann::json ReadResult(const std::string& log) {
  std::ifstream in(log);
  std::string line, json;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line == "{") inside = true;
    if (inside) json += line + "\n";
  }
  return nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
}

}  // namespace shears::bench
