#pragma once

#include "worker/engine/model/architecture.h"

namespace shears::engine {

// Llama and the models of its shape (Mistral, Qwen2): RMSNorm, rotary positions (rotate-half),
// grouped-query attention with optional q/k/v/o biases, SwiGLU MLP.
class Llama final : public Architecture {
 public:
  explicit Llama(ModelConfig config) : Architecture(std::move(config)) {}
  std::string BlockPrefix(int block) const override;
  std::vector<TensorSpec> DenseBlockTensors(int block) const override;
  std::vector<TensorSpec> OuterTensors() const override;
  MlpLayout Mlp() const override;
  torch::Tensor Embed(const TensorMap& outer, const torch::Tensor& ids) const override;
  torch::Tensor Block(const TensorMap& block, const torch::Tensor& hidden, const LinearInputs* observe) const override;
  torch::Tensor Logits(const TensorMap& outer, const torch::Tensor& hidden) const override;
};

}  // namespace shears::engine
