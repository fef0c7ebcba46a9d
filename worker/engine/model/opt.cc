#include "worker/engine/model/opt.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "worker/engine/model/layers.h"

namespace shears::engine {
namespace {

// OPT's learned positions start at index 2 (rows 0 and 1 were reserved for padding in fairseq).
constexpr int64_t kPositionOffset = 2;

}  // namespace

std::string Opt::BlockPrefix(int block) const { return absl::StrCat("model.decoder.layers.", block, "."); }

std::vector<TensorSpec> Opt::DenseBlockTensors(int block) const {
  const int64_t d = config_.hidden, f = config_.FfnOf(block);
  return {
      {"self_attn_layer_norm.weight", {d}},
      {"self_attn_layer_norm.bias", {d}},
      {"self_attn.q_proj.weight", {d, d}, false, true},
      {"self_attn.q_proj.bias", {d}},
      {"self_attn.k_proj.weight", {d, d}, false, true},
      {"self_attn.k_proj.bias", {d}},
      {"self_attn.v_proj.weight", {d, d}, false, true},
      {"self_attn.v_proj.bias", {d}},
      {"self_attn.out_proj.weight", {d, d}, false, true},
      {"self_attn.out_proj.bias", {d}},
      {"final_layer_norm.weight", {d}},
      {"final_layer_norm.bias", {d}},
      {"fc1.weight", {f, d}, false, true},
      {"fc1.bias", {f}},
      {"fc2.weight", {d, f}, false, true},
      {"fc2.bias", {d}},
  };
}

MlpLayout Opt::Mlp() const {
  return {"", "fc1.weight", "fc2.weight", "", "fc1.bias", "fc2.bias", MlpLayout::Activation::kRelu};
}

std::vector<TensorSpec> Opt::OuterTensors() const {
  const auto& c = config_;
  std::vector<TensorSpec> specs = {
      {"model.decoder.embed_tokens.weight", {c.vocab, c.embed_dim}},
      {"model.decoder.embed_positions.weight", {c.max_positions + kPositionOffset, c.hidden}},
      {"lm_head.weight", {c.vocab, c.embed_dim}, /*optional=*/c.tie_embeddings},
  };
  if (c.layer_norm_before) {
    specs.push_back({"model.decoder.final_layer_norm.weight", {c.hidden}, true});
    specs.push_back({"model.decoder.final_layer_norm.bias", {c.hidden}, true});
  }
  if (projects()) {
    specs.push_back({"model.decoder.project_in.weight", {c.hidden, c.embed_dim}});
    specs.push_back({"model.decoder.project_out.weight", {c.embed_dim, c.hidden}});
  }
  return specs;
}

torch::Tensor Opt::Embed(const TensorMap& outer, const torch::Tensor& ids) const {
  auto tokens = torch::embedding(outer.at("model.decoder.embed_tokens.weight"), ids);
  if (projects()) tokens = torch::linear(tokens, outer.at("model.decoder.project_in.weight"));
  auto positions = outer.at("model.decoder.embed_positions.weight").slice(0, kPositionOffset,
                                                                          kPositionOffset + ids.size(1));
  return tokens + positions;
}

torch::Tensor Opt::Block(int index, const TensorMap& w, const torch::Tensor& h,
                         const LinearInputs* observe) const {
  const auto& c = config_;
  auto norm = [&](const torch::Tensor& x, const std::string& name) {
    return LayerNorm(x, w.at(name + ".weight"), w.at(name + ".bias"), c.norm_eps);
  };
  auto x = c.layer_norm_before ? norm(h, "self_attn_layer_norm") : h;
  // OPT scales the queries, not the scores; the result is the same up to rounding.
  auto q = SplitHeads(Linear(x, w, "self_attn.q_proj.weight", observe) * (1.0 / std::sqrt(double(c.head_dim))), c.heads);
  auto k = SplitHeads(Linear(x, w, "self_attn.k_proj.weight", observe), c.heads);
  auto v = SplitHeads(Linear(x, w, "self_attn.v_proj.weight", observe), c.heads);
  auto out = h + Linear(CausalAttention(q, k, v, 1.0), w, "self_attn.out_proj.weight", observe);
  if (!c.layer_norm_before) out = norm(out, "self_attn_layer_norm");
  x = c.layer_norm_before ? norm(out, "final_layer_norm") : out;
  out = out + Linear(torch::relu(Linear(x, w, "fc1.weight", observe)), w, "fc2.weight", observe);
  if (!c.layer_norm_before) out = norm(out, "final_layer_norm");
  return out;
}

torch::Tensor Opt::Logits(const TensorMap& outer, const torch::Tensor& h) const {
  torch::Tensor x = h;
  auto norm = outer.find("model.decoder.final_layer_norm.weight");
  if (norm != outer.end()) {
    x = LayerNorm(x, norm->second, outer.at("model.decoder.final_layer_norm.bias"), config_.norm_eps);
  }
  if (projects()) x = torch::linear(x, outer.at("model.decoder.project_out.weight"));
  auto head = outer.find("lm_head.weight");
  return torch::linear(x, head != outer.end() ? head->second : outer.at("model.decoder.embed_tokens.weight"));
}

}  // namespace shears::engine
