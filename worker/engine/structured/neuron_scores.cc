#include "worker/engine/structured/neuron_scores.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
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

int64_t AlignedRemoval(int64_t width, int64_t removed, int64_t multiple) {
  if (multiple <= 1 || width == 0) return removed;
  const int64_t most = width / multiple * multiple;
  const int64_t kept = std::llround(double(width - removed) / double(multiple)) * multiple;
  return width - std::clamp(kept, multiple, most);
}

absl::Status CheckWidthMultiple(const ModelConfig& config, int64_t multiple) {
  if (multiple <= 1) return absl::OkStatus();
  for (int b = 0; b < config.layers; ++b) {
    if (config.HasMlp(b) && config.FfnOf(b) < multiple) {
      return absl::InvalidArgumentError(absl::StrCat("width_multiple: ", multiple, " is wider than block ", b,
                                                     "'s FFN (", config.FfnOf(b), " neurons)"));
    }
  }
  return absl::OkStatus();
}

std::vector<torch::Tensor> LowestNeurons(const std::vector<torch::Tensor>& scores, double sparsity,
                                         Allocation allocation, int64_t multiple) {
  std::vector<int64_t> counts;
  if (allocation == Allocation::kUniform) {
    for (const auto& s : scores) counts.push_back(PrunedCount(s.numel(), sparsity));
  } else {
    auto all = torch::cat(scores);
    auto mask = LowestEntries(all, PrunedCount(all.numel(), sparsity));
    int64_t at = 0;
    for (const auto& s : scores) {
      counts.push_back(mask.slice(0, at, at + s.numel()).sum().item<int64_t>());
      at += s.numel();
    }
  }
  // Within a block the global choice is that block's lowest scores too (ties to the lower index
  // in both), so choosing again per block gives the same neurons.
  std::vector<torch::Tensor> pruned;
  for (size_t b = 0; b < scores.size(); ++b) {
    pruned.push_back(LowestEntries(scores[b], AlignedRemoval(scores[b].numel(), counts[b], multiple)));
  }
  return pruned;
}

}  // namespace shears::engine
