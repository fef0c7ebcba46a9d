#pragma once

#include "worker/engine/model/llama.h"

namespace shears::engine {

// Phi-3 (and the models sharing its model_type: Phi-3.5-mini, Phi-4, Phi-4-mini) as Hugging Face
// computes them: Llama's block, with q, k and v stored as one qkv_proj and gate and up as one
// gate_up_proj (gate's rows first, as Phi3MLP chunks them), the leading dimensions of each head
// rotating (partial_rotary_factor), LongRoPE, and one sliding window on every block. The engine
// sees the parts as Llama's q_proj … up_proj: every method prunes and every rewrite cuts the
// matrices they stand for, and the writers stack them back (architecture.h, FusedLinear).
class Phi3 final : public Llama {
 public:
  explicit Phi3(ModelConfig config) : Llama(std::move(config)) {}

 protected:
  std::vector<FusedLinear> FusedGroups() const override;
};

}  // namespace shears::engine
