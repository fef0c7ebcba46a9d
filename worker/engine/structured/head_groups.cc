#include "worker/engine/structured/head_groups.h"

namespace shears::engine {
namespace {

// The rows [k·size, (k + 1)·size) of every k in `kept`.
torch::Tensor Runs(const std::vector<int64_t>& kept, int64_t size) {
  std::vector<torch::Tensor> runs;
  for (int64_t k : kept) runs.push_back(torch::arange(k * size, (k + 1) * size, torch::kInt64));
  return runs.empty() ? torch::empty({0}, torch::kInt64) : torch::cat(runs);
}

}  // namespace

HeadGroups HeadGroupsOf(const ModelConfig& config, int block) {
  return {config.heads, config.KvHeadsOf(block), config.head_dim};
}

torch::Tensor QueryRows(const HeadGroups& g, const std::vector<int64_t>& kept) {
  return Runs(kept, g.group() * g.head_dim);
}

torch::Tensor KvRows(const HeadGroups& g, const std::vector<int64_t>& kept) { return Runs(kept, g.head_dim); }

torch::Tensor GroupMagnitudes(const TensorMap& block, const HeadGroups& g) {
  // Squares summed per row (q, k, v and their biases) or per column (o), then per group.
  auto per_group = [&](const char* name, int dim) {
    auto it = block.find(name);
    if (it == block.end()) return torch::zeros({g.kv_heads});
    torch::Tensor sq = it->second.detach().to(torch::kCPU, torch::kFloat32).square();
    if (sq.dim() == 2) sq = sq.sum(1 - dim);
    return sq.reshape({g.kv_heads, -1}).sum(1);
  };
  torch::Tensor squares = per_group(kOProj, 1);
  for (const char* name : {kQProj, kKProj, kVProj, kQBias, kKBias, kVBias}) squares += per_group(name, 0);
  return squares.sqrt();
}

torch::Tensor GroupActivations(const TensorMap& block, const HeadGroups& g, const torch::Tensor& o_input_gram) {
  const torch::Tensor o = block.at(kOProj).detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor gram = o_input_gram.to(torch::kCPU, torch::kFloat64);
  const int64_t d = g.head_dim;
  torch::Tensor per_head = torch::empty({g.heads}, torch::kFloat64);
  for (int64_t h = 0; h < g.heads; ++h) {
    const torch::Tensor w = o.slice(1, h * d, (h + 1) * d);
    const torch::Tensor block_gram = gram.slice(0, h * d, (h + 1) * d).slice(1, h * d, (h + 1) * d);
    per_head[h] = (w.mm(block_gram) * w).sum();
  }
  return per_head.reshape({g.kv_heads, g.group()}).sum(1).to(torch::kFloat32);
}

}  // namespace shears::engine
