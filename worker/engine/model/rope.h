#pragma once
// Rotary position embeddings (rotate-half convention) with the frequency schedules of Hugging
// Face's modeling_rope_utils: default, linear, dynamic NTK (within max_position_embeddings),
// YaRN and Llama 3's.

#include <cstdint>

#include <torch/torch.h>

#include "worker/engine/io/model_config.h"

namespace shears::engine {

// The inverse frequency of each of the head_dim / 2 rotated pairs, F32 on the CPU.
torch::Tensor InverseFrequencies(const RopeConfig& rope, int64_t head_dim);

// cos and sin tables [T, head_dim] for positions 0..T-1, scaled by the schedule's attention factor.
struct Rotary {
  torch::Tensor cos, sin;
};
Rotary RotaryTables(int64_t length, int64_t head_dim, const RopeConfig& rope, const torch::Device& device);

// x [..., T, head_dim] rotated: x·cos + rotate_half(x)·sin.
torch::Tensor ApplyRotary(const torch::Tensor& x, const Rotary& rotary);

}  // namespace shears::engine
