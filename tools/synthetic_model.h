#pragma once
// Llama models with random weights, of any depth and width: for benchmarks and for tests that
// need many or large blocks. Written one tensor at a time, so making a model larger than memory
// works too; in BF16 and in shards with an index, a checkpoint is shaped like a published one
// (Llama-2-7B: --blocks 32 --hidden 4096 --ffn 11008 --heads 32 --vocab 32000 --dtype bf16).

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace shears::tools {

struct SyntheticLlama {
  int blocks = 4;
  int hidden = 256;
  int ffn = 704;
  int heads = 4;
  int kv_heads = 0;  // 0: as many as heads
  int vocab = 256;
  uint64_t seed = 0;
  bool bf16 = false;  // stored dtype: F32 unless BF16
  // Shards of at most this many bytes (a tensor never splits) with model.safetensors.index.json;
  // 0: one model.safetensors.
  int64_t shard_bytes = 0;
};

absl::Status WriteSyntheticLlama(const SyntheticLlama& shape, const std::string& dir);

}  // namespace shears::tools
