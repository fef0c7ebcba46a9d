#pragma once
// The client side of every Shears connection (shearsctl, the worker): TLS when a CA is given, a
// client certificate for mutual TLS, and the bearer token each call carries.

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/command_line.h"
#include "common/rpc_limits.h"

namespace shears {

// The bearer token of every call: fixed, or read from a file and read again when the file changes
// (Kubernetes rewrites projected service-account tokens in place before they expire).
class BearerToken {
 public:
  BearerToken() = default;
  explicit BearerToken(std::string token);
  static absl::StatusOr<BearerToken> FromFile(std::string path);
  // The token now; a file that cannot be read again keeps the last token read.
  std::string Get() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

struct ChannelOptions {
  std::string target;  // HOST:PORT
  int max_message_bytes = kDefaultMaxMessageBytes;
  std::string tls_ca_file;    // TLS, trusting this PEM CA; empty: plaintext
  std::string tls_cert_file;  // a client certificate and its key, for mutual TLS
  std::string tls_key_file;
  BearerToken token;  // sent as "authorization: Bearer <token>"; empty: none
};

// --tls-ca, --tls-cert, --tls-key, and the token from --token, --token-file or $SHEARS_TOKEN, in
// that order (a file's surrounding whitespace dropped, as Kubernetes Secrets often end in a newline;
// the file read again when it changes).
absl::StatusOr<ChannelOptions> ChannelFlags(const CommandLine& cl, std::string target, int max_message_bytes);

// The longest a client waits between two tries to reach a server that went away.
inline constexpr int kMaxReconnectBackoffMs = 2000;

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const ChannelOptions& options);

// Adds the token to one call. The metadata goes by hand rather than as call credentials, which
// gRPC sends only over TLS: an open server on loopback accepts it too.
void AddToken(grpc::ClientContext& context, const std::string& token);

}  // namespace shears
