#pragma once
// Protobuf messages over a pipe: a 4-byte little-endian length, then the serialized message.

#include <google/protobuf/message_lite.h>

#include "absl/status/statusor.h"

namespace shears::worker {

// Far above any message the attempt pipe carries (a result holds summaries only).
inline constexpr uint32_t kMaxPipeMessageBytes = 256u << 20;

// Writes all of it, through EINTR and partial writes. An error when the reader has gone.
absl::Status WriteMessage(int fd, const google::protobuf::MessageLite& message);
// The next message; false at a clean end of the stream (the writer closed it between messages).
// An end inside a message, an oversized length or bytes that do not parse are DATA_LOSS.
absl::StatusOr<bool> ReadMessage(int fd, google::protobuf::MessageLite* message);

}  // namespace shears::worker
