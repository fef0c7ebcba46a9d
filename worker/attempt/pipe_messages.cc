#include "worker/attempt/pipe_messages.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace shears::worker {
namespace {

absl::Status WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("writing to the attempt pipe: ", strerror(errno)));
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Bytes read before the end of the stream (fewer than `size` only there).
absl::StatusOr<size_t> ReadAll(int fd, char* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = read(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("reading the attempt pipe: ", strerror(errno)));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

}  // namespace

absl::Status WriteMessage(int fd, const google::protobuf::MessageLite& message) {
  const std::string bytes = message.SerializeAsString();
  if (bytes.size() > kMaxPipeMessageBytes) {
    return absl::ResourceExhaustedError(absl::StrCat("an attempt message of ", bytes.size(), " bytes"));
  }
  const uint32_t size = static_cast<uint32_t>(bytes.size());
  const char header[4] = {static_cast<char>(size), static_cast<char>(size >> 8), static_cast<char>(size >> 16),
                          static_cast<char>(size >> 24)};
  // One buffer, one write for small messages: a reader never waits on half a frame for long.
  std::string frame(header, 4);
  frame += bytes;
  return WriteAll(fd, frame.data(), frame.size());
}

absl::StatusOr<bool> ReadMessage(int fd, google::protobuf::MessageLite* message) {
  unsigned char header[4];
  auto got = ReadAll(fd, reinterpret_cast<char*>(header), 4);
  if (!got.ok()) return got.status();
  if (*got == 0) return false;
  if (*got < 4) return absl::DataLossError("the attempt pipe ended inside a message's length");
  const uint32_t size = header[0] | header[1] << 8 | header[2] << 16 | static_cast<uint32_t>(header[3]) << 24;
  if (size > kMaxPipeMessageBytes) {
    return absl::DataLossError(absl::StrCat("an attempt message claims ", size, " bytes"));
  }
  std::string bytes(size, '\0');
  got = ReadAll(fd, bytes.data(), size);
  if (!got.ok()) return got.status();
  if (*got < size) return absl::DataLossError("the attempt pipe ended inside a message");
  if (!message->ParseFromString(bytes)) return absl::DataLossError("an attempt message that does not parse");
  return true;
}

}  // namespace shears::worker
