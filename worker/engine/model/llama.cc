#include "worker/engine/model/llama.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "worker/engine/model/layers.h"
#include "worker/engine/model/rope.h"

namespace shears::engine {

std::string Llama::BlockPrefix(int block) const { return absl::StrCat("model.layers.", block, "."); }

std::vector<TensorSpec> Llama::DenseBlockTensors(int block) const {
  const auto& c = config_;
  const int64_t q = c.heads * c.head_dim, kv = c.KvHeadsOf(block) * c.head_dim, ffn = c.FfnOf(block);
  // A sublayer removed (Nemotron-NAS's no_op) takes its norm with it, as vLLM's DeciLM builds it.
  // Biases and norms exactly where the config says they are: a missing one is a broken
  // checkpoint, not a zero.
  std::vector<TensorSpec> out;
  if (c.HasAttention(block)) {
    out = {{"input_layernorm.weight", {c.hidden}},
           {"self_attn.q_proj.weight", {q, c.hidden}, false, true},
           {"self_attn.k_proj.weight", {kv, c.hidden}, false, true},
           {"self_attn.v_proj.weight", {kv, c.hidden}, false, true},
           {"self_attn.o_proj.weight", {c.hidden, q}, false, true}};
    if (c.qkv_bias) {
      out.push_back({"self_attn.q_proj.bias", {q}});
      out.push_back({"self_attn.k_proj.bias", {kv}});
      out.push_back({"self_attn.v_proj.bias", {kv}});
    }
    if (c.o_bias) out.push_back({"self_attn.o_proj.bias", {c.hidden}});
    if (c.qk_norm) {
      out.push_back({"self_attn.q_norm.weight", {c.head_dim}});
      out.push_back({"self_attn.k_norm.weight", {c.head_dim}});
    }
  }
  if (c.HasMlp(block)) {
    out.push_back({"post_attention_layernorm.weight", {c.hidden}});
    out.push_back({"mlp.gate_proj.weight", {ffn, c.hidden}, false, true});
    out.push_back({"mlp.up_proj.weight", {ffn, c.hidden}, false, true});
    out.push_back({"mlp.down_proj.weight", {c.hidden, ffn}, false, true});
    if (c.mlp_bias) {
      out.push_back({"mlp.gate_proj.bias", {ffn}});
      out.push_back({"mlp.up_proj.bias", {ffn}});
      out.push_back({"mlp.down_proj.bias", {c.hidden}});
    }
  }
  return out;
}

MlpLayout Llama::Mlp() const {
  MlpLayout mlp{"mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"};
  if (config_.family == Family::kGemma) mlp.activation = MlpLayout::Activation::kGeluNew;
  if (config_.mlp_bias) {
    mlp.gate_bias = "mlp.gate_proj.bias";
    mlp.up_bias = "mlp.up_proj.bias";
    mlp.down_bias = "mlp.down_proj.bias";
  }
  return mlp;
}

std::vector<TensorSpec> Llama::OuterTensors() const {
  const auto& c = config_;
  return {{"model.embed_tokens.weight", {c.vocab, c.hidden}},
          {"model.norm.weight", {c.hidden}},
          {"lm_head.weight", {c.vocab, c.hidden}, /*optional=*/c.tie_embeddings}};
}

torch::Tensor Llama::Embed(const TensorMap& outer, const torch::Tensor& ids) const {
  auto embedded = torch::embedding(outer.at("model.embed_tokens.weight"), ids);
  return config_.embed_scale == 1.0 ? embedded : embedded * config_.embed_scale;
}

torch::Tensor Llama::Norm(const torch::Tensor& x, const torch::Tensor& weight) const {
  return RmsNorm(x, config_.norm_offset == 0.0 ? weight : weight + config_.norm_offset, config_.norm_eps);
}

torch::Tensor Llama::SelfAttention(int index, const TensorMap& w, const torch::Tensor& x,
                                   const LinearInputs* observe) const {
  const auto& c = config_;
  auto q = SplitHeads(Linear(x, w, "self_attn.q_proj.weight", observe), c.heads);
  auto k = SplitHeads(Linear(x, w, "self_attn.k_proj.weight", observe), c.KvHeadsOf(index));
  auto v = SplitHeads(Linear(x, w, "self_attn.v_proj.weight", observe), c.KvHeadsOf(index));
  if (c.qk_norm) {
    q = Norm(q, w.at("self_attn.q_norm.weight"));
    k = Norm(k, w.at("self_attn.k_norm.weight"));
  }
  const Rotary rotary = RotaryTables(x.size(1), c.rotary_dim, c.RopeOf(index), x.device());
  q = ApplyRotary(q, rotary);
  k = ApplyRotary(k, rotary);
  const double scale = c.attn_scale > 0 ? c.attn_scale : 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  auto attended = CausalAttention(q, k, v, scale, c.WindowOf(index), c.attn_softcap);
  return Linear(attended, w, "self_attn.o_proj.weight", observe);
}

torch::Tensor Llama::GatedMlp(const TensorMap& w, const torch::Tensor& x, const LinearInputs* observe) const {
  auto gate = Activate(Mlp().activation, Linear(x, w, "mlp.gate_proj.weight", observe));
  return Linear(gate * Linear(x, w, "mlp.up_proj.weight", observe), w, "mlp.down_proj.weight", observe);
}

torch::Tensor Llama::Block(int index, const TensorMap& w, const torch::Tensor& h,
                           const LinearInputs* observe) const {
  return MlpHalf(index, w, AttentionHalf(index, w, h, observe), observe);
}

torch::Tensor Llama::AttentionHalf(int index, const TensorMap& w, const torch::Tensor& h,
                                   const LinearInputs* observe) const {
  if (!config_.HasAttention(index)) return h;
  return h + SelfAttention(index, w, Norm(h, w.at("input_layernorm.weight")), observe);
}

torch::Tensor Llama::MlpHalf(int index, const TensorMap& w, const torch::Tensor& h, const LinearInputs* observe) const {
  if (!config_.HasMlp(index)) return h;
  return h + GatedMlp(w, Norm(h, w.at("post_attention_layernorm.weight")), observe);
}

torch::Tensor Llama::Logits(const TensorMap& outer, const torch::Tensor& h) const {
  auto x = Norm(h, outer.at("model.norm.weight"));
  auto head = outer.find("lm_head.weight");
  auto logits = torch::linear(x, head != outer.end() ? head->second : outer.at("model.embed_tokens.weight"));
  return config_.final_softcap > 0 ? SoftCap(logits, config_.final_softcap) : logits;
}

}  // namespace shears::engine
