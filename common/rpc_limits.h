#pragma once
// The largest message Shears' RPCs carry, on every side, set explicitly instead of gRPC's default
// receive limit of 4 MiB. Results carry summaries (the per-neuron values go to the report file a
// job publishes), so a job's answers stay far below it at any model size.

#include <memory>
#include <string>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/status/statusor.h"
#include "common/command_line.h"

namespace shears {

inline constexpr int kDefaultMaxMessageBytes = 16 << 20;

// --max-message-bytes of `cl`, `fallback` when absent; between 1 MiB and 1 GiB.
inline absl::StatusOr<int> MaxMessageBytesFlag(const CommandLine& cl, int fallback) {
  auto bytes = cl.GetInt("max-message-bytes", fallback);
  if (!bytes.ok()) return bytes.status();
  if (*bytes < (1 << 20) || *bytes > (1 << 30)) {
    return absl::InvalidArgumentError("--max-message-bytes must be between 1 MiB (1048576) and 1 GiB (1073741824)");
  }
  return static_cast<int>(*bytes);
}

// An insecure channel to `target` that sends and takes messages of up to `max_message_bytes`.
inline std::shared_ptr<grpc::Channel> BoundedChannel(const std::string& target,
                                                     int max_message_bytes = kDefaultMaxMessageBytes) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_bytes);
  args.SetMaxSendMessageSize(max_message_bytes);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

}  // namespace shears
