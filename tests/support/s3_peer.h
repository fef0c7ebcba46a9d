#pragma once
// s3rver (installed by scripts/install-test-peers.sh into the build's peers/) as a test peer: an
// S3-compatible server on loopback with one bucket, "models", its data kept in a directory so that
// it can be stopped and started again on the same port. Sets the AWS_* variables that point
// Shears (and any worker the test starts afterwards) at it with s3rver's credentials.

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "tests/support/process.h"

namespace shears::testing {

class S3Peer {
 public:
  explicit S3Peer(const std::string& dir) : dir_(dir) { Start(0); }
  ~S3Peer() { Stop(); }

  void Start(int port) {
    const std::string log = absl::StrCat(dir_, "/s3rver-", starts_++, ".log");
    process_ = std::make_unique<Process>(
        std::vector<std::string>{std::string(SHEARS_BINARY_DIR) + "/peers/node_modules/.bin/s3rver", "-d",
                                 dir_ + "/s3-data", "-a", "127.0.0.1", "-p", std::to_string(port),
                                 "--configure-bucket", "models"},
        log);
    const std::string marker = "listening on 127.0.0.1:";
    for (int i = 0; i < 1000 && port_ == 0; ++i) {
      const std::string text = ReadFile(log).value_or("");
      if (const size_t at = text.find(marker); at != std::string::npos) {
        const size_t end = text.find_first_not_of("0123456789", at + marker.size());
        absl::SimpleAtoi(text.substr(at + marker.size(), end - at - marker.size()), &port_);
      }
      if (port_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (port != 0) {
      // A restart: wait until it answers again.
      const std::string marker_again = "listening on";
      for (int i = 0; i < 1000 && ReadFile(log).value_or("").find(marker_again) == std::string::npos; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    setenv("AWS_ENDPOINT_URL", endpoint().c_str(), 1);
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    setenv("AWS_REGION", "us-east-1", 1);
  }
  void Stop() {
    if (process_) process_->Stop(SIGKILL);
    process_.reset();
  }
  void Restart() {
    Stop();
    Start(port_);
  }
  // What it has logged since it last started (one line per request).
  std::string Log() const { return process_ ? process_->Log() : ""; }
  std::string endpoint() const { return absl::StrCat("http://127.0.0.1:", port_); }
  int port() const { return port_; }

 private:
  std::string dir_;
  int port_ = 0;
  int starts_ = 0;
  std::unique_ptr<Process> process_;
};

}  // namespace shears::testing
