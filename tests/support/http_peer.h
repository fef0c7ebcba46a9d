#pragma once
// tests/peers/http_peer.py as a test peer: a plain HTTP file server with Range support, a request
// log and injectable faults, standing in for web servers and Hub mirrors.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "tests/support/process.h"

namespace shears::testing {

// http_peer.py serving `root`, with its request log.
class HttpPeer {
 public:
  HttpPeer(const std::string& root, const std::string& dir, const std::vector<std::string>& faults = {})
      : log_(dir + "/requests.log") {
    std::vector<std::string> argv = {"/usr/bin/python3", std::string(SHEARS_SOURCE_DIR) + "/tests/peers/http_peer.py",
                                     root, "--port-file", dir + "/peer.port", "--log", log_};
    argv.insert(argv.end(), faults.begin(), faults.end());
    process_ = std::make_unique<Process>(argv, dir + "/peer.out");
    const std::string port = WaitForFile(dir + "/peer.port", std::chrono::seconds(20));
    url_ = absl::StrCat("http://127.0.0.1:", port);
  }
  ~HttpPeer() { process_->Stop(); }
  const std::string& url() const { return url_; }
  // Requests so far, as "METHOD PATH RANGE".
  std::vector<std::string> Requests() const {
    std::vector<std::string> out;
    for (auto line : absl::StrSplit(ReadFile(log_).value_or(""), '\n', absl::SkipEmpty())) out.emplace_back(line);
    return out;
  }

 private:
  std::string log_, url_;
  std::unique_ptr<Process> process_;
};

}  // namespace shears::testing
