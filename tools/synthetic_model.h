#pragma once
// Llama models with random weights, of any depth and width: for benchmarks and for tests that
// need many or large blocks. Written one tensor at a time, so making a model larger than memory
// works too.

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace shears::tools {

struct SyntheticLlama {
  int blocks = 4;
  int hidden = 256;
  int ffn = 704;
  int heads = 4;
  int vocab = 256;
  uint64_t seed = 0;
};

absl::Status WriteSyntheticLlama(const SyntheticLlama& shape, const std::string& dir);

}  // namespace shears::tools
