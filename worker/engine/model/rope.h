#pragma once
// Rotary position embeddings (rotate-half convention) with the frequency schedules of Hugging
// Face's modeling_rope_utils: default, linear, dynamic NTK (within max_position_embeddings),
// YaRN, Llama 3's and LongRoPE; all or only the leading dimensions of each head rotate.

#include <cstdint>

#include <torch/torch.h>

#include "worker/engine/io/model_config.h"

namespace shears::engine {

// The inverse frequency of each of the dim / 2 rotated pairs in windows of `length` positions
// (LongRoPE takes its long factors past original_max_positions), F32 on the CPU.
torch::Tensor InverseFrequencies(const RopeConfig& rope, int64_t dim, int64_t length = 0);

// cos and sin tables [T, dim] for positions 0..T-1, scaled by the schedule's attention factor:
// the leading `dim` dimensions of each head rotate.
struct Rotary {
  torch::Tensor cos, sin;
};
Rotary RotaryTables(int64_t length, int64_t dim, const RopeConfig& rope, const torch::Device& device);

// x [..., T, head_dim] rotated: x·cos + rotate_half(x)·sin over the leading dimensions the tables
// cover, the others passed through (Phi-3's partial rotary).
torch::Tensor ApplyRotary(const torch::Tensor& x, const Rotary& rotary);

}  // namespace shears::engine
