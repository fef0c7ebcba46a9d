#pragma once
// Runs the project's binaries as child processes, the way users and Kubernetes do.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"
#include "tests/support/test_postgres.h"

namespace shears::testing {

class Process {
 public:
  // Starts `argv` with stdout and stderr appended to `log_path`.
  Process(const std::vector<std::string>& argv, const std::string& log_path) : log_path_(log_path) {
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Process() { Stop(SIGKILL); }

  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  // Sends `sig` and waits for the exit; returns the exit status (or 128 + signal).
  int Stop(int sig = SIGTERM) {
    if (pid_ <= 0) return status_;
    kill(pid_, sig);
    return Wait();
  }
  int Wait() {
    if (pid_ <= 0) return status_;
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return status_;
  }
  std::string Log() const { return ReadFile(log_path_).value_or(""); }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::string log_path_;
};

// The processes whose parent is `parent` (from /proc/PID/stat), such as a worker's engine process.
inline std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = ReadFile(entry.path() / "stat").value_or("");
    const size_t end = stat.rfind(')');  // the command name may hold spaces and parentheses
    if (end == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (sscanf(stat.c_str() + end + 1, " %c %d", &state, &ppid) == 2 && ppid == parent && state != 'Z') {
      children.push_back(std::stoi(name));
    }
  }
  return children;
}

// Runs a command to completion; returns its exit status and what it printed.
struct Output {
  int status;
  std::string out;
};
inline Output RunCommand(const std::vector<std::string>& argv, const std::string& log_path) {
  Process p(argv, log_path);
  Output o;
  o.status = p.Wait();
  o.out = p.Log();
  unlink(log_path.c_str());
  return o;
}

// Polls until `path` exists with content, up to `timeout`.
inline std::string WaitForFile(const std::string& path, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto text = ReadFile(path);
    if (text.ok() && !text->empty()) return *text;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return "";
}

// The KJV train/valid/test splits, made once per test binary by the bundled tool and removed when
// it exits (by the process that made them, not by a forked child).
inline const std::string& KjvSplitsDir() {
  struct Splits {
    std::string dir;
    pid_t owner = getpid();
    ~Splits() {
      std::error_code ignored;
      if (getpid() == owner && dir.rfind("/tmp/shears-kjv-", 0) == 0) std::filesystem::remove_all(dir, ignored);
    }
  };
  static const Splits splits{[] {
    std::string pattern = "/tmp/shears-kjv-XXXXXX";
    std::string dir = mkdtemp(pattern.data());
    Output run = RunCommand({std::string(SHEARS_BINARY_DIR) + "/tools/shears-kjv-splits", dir}, dir + "/log");
    return run.status == 0 ? dir : std::string("/nonexistent/kjv: ") + run.out;
  }()};
  return splits.dir;
}

// The job store of a test server in `dir`: SQLite there, or with SHEARS_TEST_STORE=postgresql (the
// *_postgresql ctest runs) a database of the test PostgreSQL server kept for `dir`, so that a
// server restarted in the same directory finds its jobs, and replicas given one `dir` share one.
inline std::string TestStoreUrl(const std::string& dir) {
  const char* store = getenv("SHEARS_TEST_STORE");
  if (store == nullptr || std::string(store) != "postgresql") return dir + "/jobs.db";
  const std::string name = "store_" + std::to_string(std::hash<std::string>()(dir));
  // Made once per directory (psql, so that the tests need not link libpq); a server given a
  // database that could not be made fails to start, saying why.
  if (!std::filesystem::exists(dir + "/.postgres-database")) {
    Output made = RunCommand({"/usr/bin/psql", "-q", TestPostgresUrl("postgres"), "-c", "CREATE DATABASE " + name},
                             dir + "/.psql.log");
    if (made.status == 0) WriteFileAtomically(dir + "/.postgres-database", name).IgnoreError();
  }
  return TestPostgresUrl(name);
}

// shears-server on an ephemeral loopback port, with its database and log in `dir`.
struct ServerProcess {
  std::unique_ptr<Process> process;
  std::string address;  // 127.0.0.1:PORT; empty if it did not start
};
inline ServerProcess StartServer(const std::string& dir, const std::vector<std::string>& flags = {}) {
  const std::string port_file = dir + "/port";
  unlink(port_file.c_str());
  std::vector<std::string> argv = {std::string(SHEARS_BINARY_DIR) + "/server/shears-server", "--listen", "127.0.0.1:0",
                                   "--port-file", port_file};
  // Replicas sharing a store name theirs in `flags`.
  if (std::find(flags.begin(), flags.end(), "--db") == flags.end()) argv.insert(argv.end(), {"--db", TestStoreUrl(dir)});
  argv.insert(argv.end(), flags.begin(), flags.end());
  ServerProcess server{std::make_unique<Process>(argv, dir + "/server.log"), ""};
  const std::string port = WaitForFile(port_file, std::chrono::seconds(30));
  if (!port.empty()) server.address = "127.0.0.1:" + port.substr(0, port.find('\n'));
  return server;
}

}  // namespace shears::testing
