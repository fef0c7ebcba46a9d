#pragma once
// The largest message Shears' RPCs carry, on every side, set explicitly instead of gRPC's default
// receive limit of 4 MiB. Results carry summaries (the per-neuron values go to the report file a
// job publishes), so a job's answers stay far below it at any model size.

#include <memory>
#include <string>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

namespace shears {

inline constexpr int kDefaultMaxMessageBytes = 16 << 20;

// An insecure channel to `target` that sends and takes messages of up to `max_message_bytes`.
inline std::shared_ptr<grpc::Channel> BoundedChannel(const std::string& target,
                                                     int max_message_bytes = kDefaultMaxMessageBytes) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_bytes);
  args.SetMaxSendMessageSize(max_message_bytes);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

}  // namespace shears
