#include "worker/engine/model/llama.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "worker/engine/model/layers.h"

namespace shears::engine {

std::string Llama::BlockPrefix(int block) const { return absl::StrCat("model.layers.", block, "."); }

std::vector<TensorSpec> Llama::DenseBlockTensors(int block) const {
  const auto& c = config_;
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  return {
      {"input_layernorm.weight", {c.hidden}},
      {"self_attn.q_proj.weight", {q, c.hidden}, false, true},
      {"self_attn.k_proj.weight", {kv, c.hidden}, false, true},
      {"self_attn.v_proj.weight", {kv, c.hidden}, false, true},
      {"self_attn.o_proj.weight", {c.hidden, q}, false, true},
      // Qwen2 has q/k/v biases; Llama's attention_bias adds o_proj's too.
      {"self_attn.q_proj.bias", {q}, true},
      {"self_attn.k_proj.bias", {kv}, true},
      {"self_attn.v_proj.bias", {kv}, true},
      {"self_attn.o_proj.bias", {c.hidden}, true},
      {"post_attention_layernorm.weight", {c.hidden}},
      {"mlp.gate_proj.weight", {c.FfnOf(block), c.hidden}, false, true},
      {"mlp.up_proj.weight", {c.FfnOf(block), c.hidden}, false, true},
      {"mlp.down_proj.weight", {c.hidden, c.FfnOf(block)}, false, true},
  };
}

MlpLayout Llama::Mlp() const {
  return {"mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight", "", "", MlpLayout::Activation::kSilu};
}

std::vector<TensorSpec> Llama::OuterTensors() const {
  const auto& c = config_;
  return {{"model.embed_tokens.weight", {c.vocab, c.hidden}},
          {"model.norm.weight", {c.hidden}},
          {"lm_head.weight", {c.vocab, c.hidden}, /*optional=*/c.tie_embeddings}};
}

torch::Tensor Llama::Embed(const TensorMap& outer, const torch::Tensor& ids) const {
  return torch::embedding(outer.at("model.embed_tokens.weight"), ids);
}

torch::Tensor Llama::Block(const TensorMap& w, const torch::Tensor& h, const LinearInputs* observe) const {
  const auto& c = config_;
  auto x = RmsNorm(h, w.at("input_layernorm.weight"), c.norm_eps);
  auto rotary = RotaryTables(h.size(1), c.head_dim, c.rope_theta, h.device());
  auto q = ApplyRotary(SplitHeads(Linear(x, w, "self_attn.q_proj.weight", observe), c.heads), rotary);
  auto k = ApplyRotary(SplitHeads(Linear(x, w, "self_attn.k_proj.weight", observe), c.kv_heads), rotary);
  auto v = SplitHeads(Linear(x, w, "self_attn.v_proj.weight", observe), c.kv_heads);
  auto attended = CausalAttention(q, k, v, 1.0 / std::sqrt(static_cast<double>(c.head_dim)), c.sliding_window);
  auto out = h + Linear(attended, w, "self_attn.o_proj.weight", observe);
  x = RmsNorm(out, w.at("post_attention_layernorm.weight"), c.norm_eps);
  auto gated = torch::silu(Linear(x, w, "mlp.gate_proj.weight", observe)) * Linear(x, w, "mlp.up_proj.weight", observe);
  return out + Linear(gated, w, "mlp.down_proj.weight", observe);
}

torch::Tensor Llama::Logits(const TensorMap& outer, const torch::Tensor& h) const {
  auto x = RmsNorm(h, outer.at("model.norm.weight"), config_.norm_eps);
  auto head = outer.find("lm_head.weight");
  return torch::linear(x, head != outer.end() ? head->second : outer.at("model.embed_tokens.weight"));
}

}  // namespace shears::engine
