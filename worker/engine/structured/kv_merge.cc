#include "worker/engine/structured/kv_merge.h"

#include <vector>

#include "worker/engine/model/rope.h"

namespace shears::engine {
namespace {

// A projection's weight with its bias as one more column, [kv·d, in (+1)], F64 on the CPU.
torch::Tensor WithBias(const TensorMap& block, const char* weight, const char* bias) {
  torch::Tensor w = block.at(weight).detach().to(torch::kCPU, torch::kFloat64);
  auto b = block.find(bias);
  return b == block.end() ? w : torch::cat({w, b->second.detach().to(torch::kCPU, torch::kFloat64).unsqueeze(1)}, 1);
}

// [kv·d, in] -> [kv, d, in]
torch::Tensor PerHead(const torch::Tensor& w, int64_t kv_heads) { return w.reshape({kv_heads, -1, w.size(1)}); }

// Each run of m KV heads merged as (Σ A_i)⁻¹ Σ A_i W_i, A_i [d, d] one per old KV head.
torch::Tensor WeightedMerge(const torch::Tensor& w, const torch::Tensor& a, int64_t kv_heads) {
  const int64_t old = a.size(0), m = old / kv_heads, d = a.size(1);
  const torch::Tensor heads = PerHead(w, old);
  std::vector<torch::Tensor> merged;
  for (int64_t j = 0; j < kv_heads; ++j) {
    torch::Tensor lhs = a.slice(0, j * m, (j + 1) * m).sum(0);
    torch::Tensor rhs = torch::einsum("iab,ibc->ac", {a.slice(0, j * m, (j + 1) * m), heads.slice(0, j * m, (j + 1) * m)});
    // A little damping keeps a direction no query (or no o_proj column) reads solvable.
    lhs += torch::eye(d, lhs.options()) * (1e-8 * lhs.diagonal().mean().item<double>() + 1e-30);
    merged.push_back(torch::linalg_solve(lhs, rhs));
  }
  return torch::cat(merged, 0);
}

MergedKv Split(const TensorMap& block, const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t in = block.at(kKProj).size(1);
  MergedKv out;
  out.k_weight = k.slice(1, 0, in).to(torch::kFloat32).contiguous();
  out.v_weight = v.slice(1, 0, in).to(torch::kFloat32).contiguous();
  if (block.count(kKBias)) out.k_bias = k.select(1, in).to(torch::kFloat32).contiguous();
  if (block.count(kVBias)) out.v_bias = v.select(1, in).to(torch::kFloat32).contiguous();
  return out;
}

// rotate_half as a matrix over a head's dimensions: P v = [−v₂, v₁] over the `rotary` leading
// ones, zero elsewhere.
torch::Tensor RotateHalfMatrix(int64_t d, int64_t rotary) {
  torch::Tensor p = torch::zeros({d, d}, torch::kFloat64);
  const int64_t half = rotary / 2;
  for (int64_t a = 0; a < half; ++a) {
    p[a][a + half] = -1.0;
    p[a + half][a] = 1.0;
  }
  return p;
}

// Σ_δ w_δ R_δ C R_δᵀ over each query covariance C [n, d, d], w_δ = window − δ the number of
// causal (query, key) pairs δ apart. With R_δ = diag(cos_δ) + diag(sin_δ) P, each of the four
// products is C's (or its P-products') entries times a d×d table of Σ_δ w_δ cos·cos etc.
torch::Tensor RopeAveraged(const torch::Tensor& c, const ModelConfig& config, int block, int64_t window) {
  const int64_t d = c.size(1), rotary = config.rotary_dim;
  const Rotary tables = RotaryTables(window, rotary, config.RopeOf(block), torch::kCPU);
  torch::Tensor cos = torch::ones({window, d}, torch::kFloat64), sin = torch::zeros({window, d}, torch::kFloat64);
  cos.slice(1, 0, rotary).copy_(tables.cos.to(torch::kFloat64));
  sin.slice(1, 0, rotary).copy_(tables.sin.to(torch::kFloat64));
  const torch::Tensor w = torch::arange(window, 0, -1, torch::kFloat64).unsqueeze(1);
  const torch::Tensor cc = cos.t().mm(cos * w), cs = cos.t().mm(sin * w), ss = sin.t().mm(sin * w);
  const torch::Tensor p = RotateHalfMatrix(d, rotary);
  const torch::Tensor pc = torch::matmul(p, c);
  return c * cc + pc.transpose(1, 2) * cs + pc * cs.t() + torch::matmul(pc, p.t()) * ss;
}

}  // namespace

MergedKv MeanPooledKv(const TensorMap& block, const HeadGroups& g, int64_t kv_heads) {
  auto pool = [&](const torch::Tensor& w) {
    const torch::Tensor heads = PerHead(w, g.kv_heads);
    return heads.reshape({kv_heads, g.kv_heads / kv_heads, g.head_dim, w.size(1)}).mean(1).reshape({-1, w.size(1)});
  };
  return Split(block, pool(WithBias(block, kKProj, kKBias)), pool(WithBias(block, kVProj, kVBias)));
}

MergedKv FittedKv(const TensorMap& block, const HeadGroups& g, int64_t kv_heads, const torch::Tensor& query_input_gram,
                  const ModelConfig& config, int block_index, int64_t window) {
  const int64_t d = g.head_dim, hidden = block.at(kQProj).size(1);
  // Each query head's covariance over the calibration tokens, [heads, d, d]; a bias adds its
  // column against the Gram matrix's ones.
  torch::Tensor q = WithBias(block, kQProj, kQBias);
  torch::Tensor gram = query_input_gram.to(torch::kCPU, torch::kFloat64);
  if (q.size(1) == hidden) gram = gram.slice(0, 0, hidden).slice(1, 0, hidden);
  const torch::Tensor qh = PerHead(q, g.heads);                                   // [heads, d, in]
  const torch::Tensor covariance = torch::matmul(torch::matmul(qh, gram), qh.transpose(1, 2));
  const torch::Tensor keys = RopeAveraged(covariance, config, block_index, window).reshape({g.kv_heads, g.group(), d, d}).sum(1);
  // o_proj's columns of each query head, [heads, hidden, d] -> O_hᵀO_h summed per KV head.
  const torch::Tensor o = block.at(kOProj).detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor oh = o.reshape({o.size(0), g.heads, d}).permute({1, 0, 2});
  const torch::Tensor values = torch::matmul(oh.transpose(1, 2), oh).reshape({g.kv_heads, g.group(), d, d}).sum(1);
  return Split(block, WeightedMerge(WithBias(block, kKProj, kKBias), keys, kv_heads),
               WeightedMerge(WithBias(block, kVProj, kVBias), values, kv_heads));
}

TensorMap WithMergedKv(const TensorMap& block, const MergedKv& merged, int64_t kv_heads) {
  TensorMap out = block;
  const torch::Device device = block.at(kKProj).device();
  const int64_t d = block.at(kKProj).size(0) / kv_heads, repeats = kv_heads / (merged.k_weight.size(0) / d);
  auto expand = [&](const torch::Tensor& t) {
    const torch::Tensor heads = t.reshape({-1, d, t.dim() == 2 ? t.size(1) : 1});
    return heads.repeat_interleave(repeats, 0).reshape({kv_heads * d, -1}).squeeze(1).to(device);
  };
  out[kKProj] = expand(merged.k_weight);
  out[kVProj] = expand(merged.v_weight);
  if (merged.k_bias.defined()) out[kKBias] = expand(merged.k_bias);
  if (merged.v_bias.defined()) out[kVBias] = expand(merged.v_bias);
  return out;
}

}  // namespace shears::engine
