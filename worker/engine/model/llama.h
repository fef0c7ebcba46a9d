#pragma once

#include "worker/engine/model/architecture.h"

namespace shears::engine {

// Llama and the models of its shape (Mistral, Qwen2/2.5, Qwen3) as Hugging Face computes them:
// RMSNorm, rotary positions (rotate-half, with the rope_scaling schedules of rope.h), grouped-query
// attention with the biases the config names, Qwen3's RMSNorm over each head of q and k, sliding
// windows per block, SwiGLU MLP with optional biases.
class Llama : public Architecture {
 public:
  explicit Llama(ModelConfig config) : Architecture(std::move(config)) {}
  std::string BlockPrefix(int block) const override;
  std::vector<TensorSpec> DenseBlockTensors(int block) const override;
  std::vector<TensorSpec> OuterTensors() const override;
  MlpLayout Mlp() const override;
  torch::Tensor Embed(const TensorMap& outer, const torch::Tensor& ids) const override;
  // MlpHalf(AttentionHalf(hidden)).
  torch::Tensor Block(int index, const TensorMap& block, const torch::Tensor& hidden,
                      const LinearInputs* observe) const final;
  bool SplitsIntoSublayers() const override { return true; }
  torch::Tensor AttentionHalf(int index, const TensorMap& block, const torch::Tensor& hidden,
                              const LinearInputs* observe) const override;
  torch::Tensor MlpHalf(int index, const TensorMap& block, const torch::Tensor& hidden,
                        const LinearInputs* observe) const override;
  torch::Tensor Logits(const TensorMap& outer, const torch::Tensor& hidden) const override;

 protected:
  // RMSNorm by the config's offset + weight.
  torch::Tensor Norm(const torch::Tensor& x, const torch::Tensor& weight) const;
  // Block `index`'s attention of normalized x, through o_proj.
  torch::Tensor SelfAttention(int index, const TensorMap& w, const torch::Tensor& x, const LinearInputs* observe) const;
  // The gated MLP of normalized x, through down_proj.
  torch::Tensor GatedMlp(const TensorMap& w, const torch::Tensor& x, const LinearInputs* observe) const;
};

}  // namespace shears::engine
