#include "worker/engine/model/gemma.h"

namespace shears::engine {

std::vector<TensorSpec> Gemma::DenseBlockTensors(int block) const {
  std::vector<TensorSpec> out = Llama::DenseBlockTensors(block);
  out.push_back({"pre_feedforward_layernorm.weight", {config_.hidden}});
  out.push_back({"post_feedforward_layernorm.weight", {config_.hidden}});
  return out;
}

// Gemma2DecoderLayer / Gemma3DecoderLayer: post_attention_layernorm normalizes attention's output
// before the residual (in Llama it is the MLP's input norm); the MLP sits between its own two.
torch::Tensor Gemma::AttentionHalf(int index, const TensorMap& w, const torch::Tensor& h,
                                   const LinearInputs* observe) const {
  auto attended = SelfAttention(index, w, Norm(h, w.at("input_layernorm.weight")), observe);
  return h + Norm(attended, w.at("post_attention_layernorm.weight"));
}

torch::Tensor Gemma::MlpHalf(int index, const TensorMap& w, const torch::Tensor& h, const LinearInputs* observe) const {
  auto mlp = GatedMlp(w, Norm(h, w.at("pre_feedforward_layernorm.weight")), observe);
  return h + Norm(mlp, w.at("post_feedforward_layernorm.weight"));
}

}  // namespace shears::engine
