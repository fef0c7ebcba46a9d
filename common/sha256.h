#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace shears {

// A SHA-256 computed piece by piece, as a download or an upload streams.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void Update(const char* data, size_t size);
  // The lower-case hex digest of everything so far; the object is spent afterwards.
  std::string Hex();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Lower-case hex digests.
std::string Sha256Hex(const std::string& data);
// Of `length` bytes from `offset` (-1: to the end), e.g. one part of a multipart upload.
absl::StatusOr<std::string> Sha256File(const std::string& path, int64_t offset = 0, int64_t length = -1);

}  // namespace shears
