#include "worker/engine/model/gpt2.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "worker/engine/model/layers.h"

namespace shears::engine {
namespace {

// Conv1D: x W + b with W stored [in, out].
torch::Tensor Conv1D(const torch::Tensor& x, const TensorMap& w, const std::string& prefix,
                     const LinearInputs* observe) {
  if (observe != nullptr) (*observe)(prefix + ".weight", x);
  if (w.count(prefix + ".weight") != 0) {
    return torch::addmm(w.at(prefix + ".bias"), x.reshape({-1, x.size(-1)}), w.at(prefix + ".weight"))
        .view({x.size(0), x.size(1), -1});
  }
  return MultiplyByWeight(x, w, prefix + ".weight", /*stored_transposed=*/true) + w.at(prefix + ".bias");
}

}  // namespace

std::string Gpt2::BlockPrefix(int block) const { return absl::StrCat("transformer.h.", block, "."); }

std::vector<TensorSpec> Gpt2::DenseBlockTensors(int block) const {
  const int64_t d = config_.hidden, f = config_.FfnOf(block);
  return {
      {"ln_1.weight", {d}},
      {"ln_1.bias", {d}},
      {"attn.c_attn.weight", {d, 3 * d}, false, true},
      {"attn.c_attn.bias", {3 * d}},
      {"attn.c_proj.weight", {d, d}, false, true},
      {"attn.c_proj.bias", {d}},
      {"ln_2.weight", {d}},
      {"ln_2.bias", {d}},
      {"mlp.c_fc.weight", {d, f}, false, true},
      {"mlp.c_fc.bias", {f}},
      {"mlp.c_proj.weight", {f, d}, false, true},
      {"mlp.c_proj.bias", {d}},
  };
}

MlpLayout Gpt2::Mlp() const {
  return {"", "mlp.c_fc.weight", "mlp.c_proj.weight", "", "mlp.c_fc.bias", "mlp.c_proj.bias",
          MlpLayout::Activation::kGeluNew};
}

std::vector<TensorSpec> Gpt2::OuterTensors() const {
  const int64_t d = config_.hidden;
  return {{"transformer.wte.weight", {config_.vocab, d}},
          {"transformer.wpe.weight", {config_.max_positions, d}},
          {"transformer.ln_f.weight", {d}},
          {"transformer.ln_f.bias", {d}}};
}

torch::Tensor Gpt2::Embed(const TensorMap& outer, const torch::Tensor& ids) const {
  auto positions = outer.at("transformer.wpe.weight").slice(0, 0, ids.size(1));
  return torch::embedding(outer.at("transformer.wte.weight"), ids) + positions;
}

torch::Tensor Gpt2::Block(int index, const TensorMap& w, const torch::Tensor& h,
                          const LinearInputs* observe) const {
  const auto& c = config_;
  auto x = LayerNorm(h, w.at("ln_1.weight"), w.at("ln_1.bias"), c.norm_eps);
  auto qkv = Conv1D(x, w, "attn.c_attn", observe).split(c.hidden, -1);
  auto attended = CausalAttention(SplitHeads(qkv[0], c.heads), SplitHeads(qkv[1], c.heads),
                                  SplitHeads(qkv[2], c.heads), 1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  auto out = h + Conv1D(attended, w, "attn.c_proj", observe);
  x = LayerNorm(out, w.at("ln_2.weight"), w.at("ln_2.bias"), c.norm_eps);
  return out + Conv1D(GeluNew(Conv1D(x, w, "mlp.c_fc", observe)), w, "mlp.c_proj", observe);
}

torch::Tensor Gpt2::Logits(const TensorMap& outer, const torch::Tensor& h) const {
  auto x = LayerNorm(h, outer.at("transformer.ln_f.weight"), outer.at("transformer.ln_f.bias"), config_.norm_eps);
  return torch::linear(x, outer.at("transformer.wte.weight"));
}

}  // namespace shears::engine
