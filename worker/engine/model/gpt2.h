#pragma once

#include "worker/engine/model/architecture.h"

namespace shears::engine {

// GPT-2: LayerNorm, learned positions, Conv1D weights stored [in, out], gelu_new, tied head.
class Gpt2 final : public Architecture {
 public:
  explicit Gpt2(ModelConfig config) : Architecture(std::move(config)) {}
  std::string BlockPrefix(int block) const override;
  std::vector<TensorSpec> DenseBlockTensors(int block) const override;
  std::vector<TensorSpec> OuterTensors() const override;
  MlpLayout Mlp() const override;
  bool LinearsStoredTransposed() const override { return true; }
  torch::Tensor Embed(const TensorMap& outer, const torch::Tensor& ids) const override;
  torch::Tensor Block(int index, const TensorMap& block, const torch::Tensor& hidden,
                      const LinearInputs* observe) const override;
  torch::Tensor Logits(const TensorMap& outer, const torch::Tensor& hidden) const override;
};

}  // namespace shears::engine
