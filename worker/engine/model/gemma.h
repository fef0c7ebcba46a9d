#pragma once

#include "worker/engine/model/llama.h"

namespace shears::engine {

// Gemma 2 and Gemma 3 (text) as Hugging Face computes them: Llama's tensors and attention, with
// what model_config.h's gemma fields say (RMSNorm by 1 + weight, embeddings scaled by √hidden,
// GELU-tanh gate, query_pre_attn_scalar, soft caps, Gemma 3's q/k norms and local rope), and a
// norm after attention and one on each side of the MLP.
class Gemma final : public Llama {
 public:
  explicit Gemma(ModelConfig config) : Llama(std::move(config)) {}
  std::vector<TensorSpec> DenseBlockTensors(int block) const override;
  // The sandwich norms: each sublayer's output normalized before it joins the residual stream.
  torch::Tensor AttentionHalf(int index, const TensorMap& block, const torch::Tensor& hidden,
                              const LinearInputs* observe) const override;
  torch::Tensor MlpHalf(int index, const TensorMap& block, const torch::Tensor& hidden,
                        const LinearInputs* observe) const override;
};

}  // namespace shears::engine
