#pragma once
// The HTTP endpoint a process serves its Prometheus metrics on (`--metrics-listen HOST:PORT`,
// GET /metrics in the text exposition format, prometheus-cpp's serializer).
//
// A small server of our own rather than prometheus-cpp's CivetWeb exposer: in the worker, CivetWeb
// fails to start ("Cannot create threads: error 0") because it asks for small fixed thread stacks,
// and once LibTorch's libraries are loaded their static TLS no longer fits in such a stack
// (pthread_create with a 100 KiB stack returns EINVAL there; checked).
// Each connection is answered on a thread of its own, within a deadline (5 s to send the request,
// 5 s to take the answer), so a slow or silent client never delays another scrape; at most
// kMaxConnections are served at once, and one more is answered 503 at once.

#include <memory>
#include <set>
#include <string>
#include <thread>

#include <prometheus/collectable.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace shears {

class MetricsEndpoint {
 public:
  static constexpr int kMaxConnections = 16;

  // Port 0 picks a free port; port() tells which. The endpoint holds `metrics` alive.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(const std::string& listen,
                                                                std::shared_ptr<prometheus::Collectable> metrics);
  ~MetricsEndpoint();
  int port() const { return port_; }

 private:
  MetricsEndpoint(int listen_fd, int port, std::shared_ptr<prometheus::Collectable> metrics);
  void Serve();
  void Answer(int fd) const;

  const int listen_fd_;
  const int port_;
  const std::shared_ptr<prometheus::Collectable> metrics_;
  int wake_[2] = {-1, -1};  // a pipe whose write end stops Serve
  std::thread thread_;
  // The connections being answered, each on a detached thread. Shared with those threads, so that
  // the last one may still release the lock after the destructor has seen the set empty.
  struct Connections {
    absl::Mutex mu;
    std::set<int> open ABSL_GUARDED_BY(mu);
  };
  const std::shared_ptr<Connections> connections_ = std::make_shared<Connections>();
};

// Writes `port` to `path` through a rename, so a reader polling for the file never sees half of it.
absl::Status WritePortFile(const std::string& path, int port);

}  // namespace shears
