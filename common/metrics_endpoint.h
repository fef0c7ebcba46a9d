#pragma once
// The HTTP endpoint a process serves its Prometheus metrics on (`--metrics-listen HOST:PORT`,
// GET /metrics in the text exposition format, prometheus-cpp's serializer).
//
// A small server of our own rather than prometheus-cpp's CivetWeb exposer: in the worker, CivetWeb
// fails to start ("Cannot create threads: error 0") because it asks for small fixed thread stacks,
// and once LibTorch's libraries are loaded their static TLS no longer fits in such a stack
// (pthread_create with a 100 KiB stack returns EINVAL there; checked).
// Scrapes are a few a minute, so one thread answering one connection at a time is plenty.

#include <memory>
#include <string>
#include <thread>

#include <prometheus/collectable.h>

#include "absl/status/statusor.h"

namespace shears {

class MetricsEndpoint {
 public:
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
};

// Writes `port` to `path` through a rename, so a reader polling for the file never sees half of it.
absl::Status WritePortFile(const std::string& path, int port);

}  // namespace shears
