// The /metrics endpoint under the clients an operator's bad day brings: one that connects and
// says nothing must not hold up Prometheus' scrape (issue 19: it timed every scrape out).
#include "common/metrics_endpoint.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

namespace shears {
namespace {

// A connected socket to 127.0.0.1:`port` whose reads give up after `timeout_s`.
int Connect(int port, int timeout_s) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const timeval timeout = {timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// GET /metrics on a connection of its own; what came back before the server closed it or the
// 2 s read timeout passed (the server waits up to 5 s for a silent client).
std::string Scrape(int port) {
  const int fd = Connect(port, 2);
  if (fd < 0) return "";
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string answer;
  char buffer[4096];
  for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) answer.append(buffer, static_cast<size_t>(n));
  close(fd);
  return answer;
}

TEST(MetricsEndpoint, SilentClientsDoNotHoldUpAScrape) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter().Name("shears_test_total").Help("a counter").Register(*registry).Add({}).Increment();
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  const int port = (*endpoint)->port();
  // Three clients that connect and send nothing, as a stuck scraper or a port scanner would.
  std::vector<int> silent;
  for (int i = 0; i < 3; ++i) silent.push_back(Connect(port, 10));
  const std::string answer = Scrape(port);
  EXPECT_NE(answer.find("HTTP/1.1 200 OK"), std::string::npos) << answer;
  EXPECT_NE(answer.find("shears_test_total 1"), std::string::npos) << answer;
  // Past the limit of connections at once, a scrape is told so at once instead of waiting.
  for (int i = 3; i < MetricsEndpoint::kMaxConnections; ++i) silent.push_back(Connect(port, 10));
  const std::string refused = Scrape(port);
  EXPECT_NE(refused.find("HTTP/1.1 503"), std::string::npos) << refused;
  // The silent ones are dropped at their deadline; the endpoint stops with them open.
  for (int fd : silent) close(fd);
}

TEST(MetricsEndpoint, StopsWhileAClientHoldsAConnection) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  const int fd = Connect((*endpoint)->port(), 10);
  ASSERT_GE(fd, 0);
  endpoint->reset();  // returns: the open connection is cut short, not waited for
  char byte;
  EXPECT_LE(recv(fd, &byte, 1, 0), 0);
  close(fd);
}

}  // namespace
}  // namespace shears
