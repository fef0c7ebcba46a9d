#pragma once

#include "worker/engine/model/architecture.h"

namespace shears::engine {

// OPT: learned positions offset by 2, LayerNorm before (or, in opt-350m, after) each sub-layer,
// ReLU MLP, biases everywhere, and an optional projection when word_embed_proj_dim != hidden_size.
class Opt final : public Architecture {
 public:
  explicit Opt(ModelConfig config) : Architecture(std::move(config)) {}
  std::string BlockPrefix(int block) const override;
  std::vector<TensorSpec> DenseBlockTensors(int block) const override;
  std::vector<TensorSpec> OuterTensors() const override;
  MlpLayout Mlp() const override;
  torch::Tensor Embed(const TensorMap& outer, const torch::Tensor& ids) const override;
  torch::Tensor Block(int index, const TensorMap& block, const torch::Tensor& hidden,
                      const LinearInputs* observe) const override;
  torch::Tensor Logits(const TensorMap& outer, const torch::Tensor& hidden) const override;

 private:
  bool projects() const { return config_.embed_dim != config_.hidden; }
};

}  // namespace shears::engine
