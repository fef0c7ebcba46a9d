#include "worker/engine/ffn_neurons.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/block_runner.h"
#include "worker/engine/job_data.h"
#include "worker/engine/masks.h"
#include "worker/engine/redundancy.h"
#include "worker/engine/rewritten_model.h"

namespace shears::engine {
namespace {

// For each tensor of a block's MLP, the dimension that runs over its neurons.
std::map<std::string, int> NeuronAxes(const MlpLayout& mlp, bool transposed) {
  std::map<std::string, int> axes = {{mlp.up, transposed ? 1 : 0}, {mlp.down, transposed ? 0 : 1}};
  if (!mlp.gate.empty()) axes[mlp.gate] = transposed ? 1 : 0;
  if (!mlp.up_bias.empty()) axes[mlp.up_bias] = 0;
  return axes;
}

// One score per neuron of the block, lower going first.
torch::Tensor NeuronScores(const PruneOptions& options, const TensorMap& block, const std::map<std::string, int>& axes,
                           int index) {
  const int64_t width = block.at(axes.begin()->first).size(axes.begin()->second);
  if (options.method == Method::kRandom) {
    auto generator = at::detail::createCPUGenerator(options.seed * 1000003 + index);
    return at::rand({width}, generator, torch::kFloat32);
  }
  // Magnitude: the norm of every weight and bias entry the neuron owns.
  auto squares = torch::zeros({width}, torch::kFloat32);
  for (const auto& [name, axis] : axes) {
    const torch::Tensor& t = block.at(name);
    auto sq = t.square().cpu();
    squares += t.dim() == 1 ? sq : sq.sum(1 - axis);
  }
  return squares.sqrt();
}

// The neurons each block keeps, ascending.
absl::StatusOr<std::vector<torch::Tensor>> SelectNeurons(const PruneOptions& options,
                                                         const std::vector<torch::Tensor>& scores) {
  std::vector<torch::Tensor> pruned;
  if (options.allocation == Allocation::kUniform) {
    for (const auto& s : scores) pruned.push_back(LowestEntries(s, PrunedCount(s.numel(), options.target_sparsity)));
  } else {
    auto all = torch::cat(scores);
    auto mask = LowestEntries(all, PrunedCount(all.numel(), options.target_sparsity));
    int64_t at = 0;
    for (const auto& s : scores) {
      pruned.push_back(mask.slice(0, at, at + s.numel()));
      at += s.numel();
    }
  }
  std::vector<torch::Tensor> keep;
  for (size_t b = 0; b < pruned.size(); ++b) {
    if (pruned[b].all().item<bool>()) {
      return absl::InvalidArgumentError(absl::StrCat("target_sparsity: ", options.target_sparsity,
                                                     " would remove every FFN neuron of block ", b));
    }
    keep.push_back(pruned[b].logical_not().nonzero().reshape(-1));
  }
  return keep;
}

}  // namespace

absl::StatusOr<PruneReport> PruneFfnNeurons(const PruneOptions& options, const PruneObserver& observer,
                                            const ModelDir& model, const Architecture& arch, torch::Device device) {
  const int blocks = arch.num_blocks();
  const MlpLayout mlp = arch.Mlp();
  const auto axes = NeuronAxes(mlp, arch.LinearsStoredTransposed());
  BlockRunner runner(model, arch, device);
  JobData data(model, arch.config());

  PruneReport report;
  torch::Tensor calibration;
  if (options.calibration) {
    SHEARS_ASSIGN_OR_RETURN(calibration, data.CalibrationWindows(*options.calibration));
    RecordRedundancy(runner, calibration, "dense", observer, report);
  }
  std::vector<torch::Tensor> scores;
  for (int b = 0; b < blocks; ++b) scores.push_back(NeuronScores(options, runner.LoadBlock(b), axes, b));
  SHEARS_ASSIGN_OR_RETURN(std::vector<torch::Tensor> keep, SelectNeurons(options, scores));

  std::vector<int64_t> widths;
  for (int b = 0; b < blocks; ++b) {
    const int64_t before = scores[b].numel(), after = keep[b].numel();
    widths.push_back(after);
    int64_t parameters = 0;
    for (const auto& [name, axis] : axes) {
      const auto* at = model.Find(arch.BlockPrefix(b) + name);
      if (at != nullptr) parameters += at->info->numel();
    }
    const int64_t removed = parameters / before * (before - after);
    report.parameters_before += parameters;
    report.parameters_after += parameters - removed;
    report.layers.push_back({arch.BlockPrefix(b) + "mlp", b, parameters, removed, -1.0, 0.0});
    if (observer.on_layer) observer.on_layer(report.layers.back());
  }

  nlohmann::json config = model.config();
  const auto [narrowest, widest] = std::minmax_element(widths.begin(), widths.end());
  config[FfnKey(arch.config().family)] = *widest;
  config.erase(kFfnSizesKey);
  if (*narrowest != *widest) config[kFfnSizesKey] = widths;
  const TensorEditor edit = [&](const std::string& name) {
    const int b = arch.BlockOf(name);
    if (b < 0) return TensorEdit{false, name};
    auto axis = axes.find(name.substr(arch.BlockPrefix(b).size()));
    if (axis == axes.end()) return TensorEdit{false, name};
    return TensorEdit{false, name, axis->second, keep[b]};
  };
  if (observer.on_progress) observer.on_progress("writing", 0.5, "removing FFN neurons");
  SHEARS_RETURN_IF_ERROR(WriteRewrittenModel(model, options.output_dir, edit, config, report));
  SHEARS_RETURN_IF_ERROR(EvaluateRewrittenModel(options, observer, data, runner, device, calibration, report));
  return report;
}

}  // namespace shears::engine
