#include "worker/engine/structured/neuron_scores.h"

#include "worker/engine/methods/masks.h"

namespace shears::engine {

NeuronAxes NeuronAxesOf(const Architecture& arch) {
  const MlpLayout mlp = arch.Mlp();
  const bool transposed = arch.LinearsStoredTransposed();
  NeuronAxes axes = {{mlp.up, transposed ? 1 : 0}, {mlp.down, transposed ? 0 : 1}};
  if (!mlp.gate.empty()) axes[mlp.gate] = transposed ? 1 : 0;
  if (!mlp.up_bias.empty()) axes[mlp.up_bias] = 0;
  if (!mlp.gate_bias.empty()) axes[mlp.gate_bias] = 0;
  return axes;
}

torch::Tensor MagnitudeScores(const TensorMap& block, const NeuronAxes& axes) {
  torch::Tensor squares;
  for (const auto& [name, axis] : axes) {
    const torch::Tensor sq = block.at(name).detach().square().to(torch::kCPU, torch::kFloat32);
    auto per_neuron = sq.dim() == 1 ? sq : sq.sum(1 - axis);
    squares = squares.defined() ? squares + per_neuron : per_neuron;
  }
  return squares.sqrt();
}

torch::Tensor RandomScores(uint64_t seed, int index, int64_t width) {
  auto generator = at::detail::createCPUGenerator(seed * 1000003 + index);
  return at::rand({width}, generator, torch::kFloat32);
}

std::vector<torch::Tensor> LowestNeurons(const std::vector<torch::Tensor>& scores, double sparsity,
                                         Allocation allocation) {
  std::vector<torch::Tensor> pruned;
  if (allocation == Allocation::kUniform) {
    for (const auto& s : scores) pruned.push_back(LowestEntries(s, PrunedCount(s.numel(), sparsity)));
    return pruned;
  }
  auto all = torch::cat(scores);
  auto mask = LowestEntries(all, PrunedCount(all.numel(), sparsity));
  int64_t at = 0;
  for (const auto& s : scores) {
    pruned.push_back(mask.slice(0, at, at + s.numel()));
    at += s.numel();
  }
  return pruned;
}

}  // namespace shears::engine
