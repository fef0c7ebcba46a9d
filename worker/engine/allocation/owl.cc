#include "worker/engine/allocation/owl.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/engine/io/compressed_tensors.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/methods/wanda.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/run/prune_pass.h"
#include "worker/engine/runtime/device.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {
namespace {

// The measuring pass's share of the job's progress bar: one forward pass against the method's own.
constexpr double kMeasureShare = 0.2;

}  // namespace

OwlOptions OwlWithDefaults(OwlOptions owl) {
  if (owl.outlier_multiple == 0.0) owl.outlier_multiple = kDefaultOwlOutlierMultiple;
  if (owl.max_deviation == 0.0) owl.max_deviation = kDefaultOwlMaxDeviation;
  return owl;
}

std::vector<double> OwlSparsities(const std::vector<double>& outlier_ratios, double target, double max_deviation) {
  std::vector<double> sparsity(outlier_ratios.size(), target);
  if (outlier_ratios.empty()) return sparsity;
  const auto [low, high] = std::minmax_element(outlier_ratios.begin(), outlier_ratios.end());
  if (!(*high > *low)) return sparsity;
  std::vector<double> scaled;
  for (double r : outlier_ratios) scaled.push_back((r - *low) / (*high - *low) * 2.0 * max_deviation);
  const double mean = std::accumulate(scaled.begin(), scaled.end(), 0.0) / double(scaled.size());
  // Density 1 - target + scaled - mean: more outliers, more weights kept.
  for (size_t i = 0; i < scaled.size(); ++i) sparsity[i] = target - (scaled[i] - mean);
  return sparsity;
}

absl::StatusOr<double> OutlierRatio(const Architecture& arch, int block, const TensorMap& tensors,
                                    const BlockInputs& inputs, double multiple) {
  // Two passes over the block's linears instead of one concatenation of every score: at 7B a
  // block has 200 M weights.
  const std::string prefix = arch.BlockPrefix(block);
  std::vector<std::pair<torch::Tensor, const LinearInputStats*>> linears;
  for (const auto& linear : arch.BlockLinears(block)) {
    const std::string local = linear.name.substr(prefix.size());
    const LinearInputStats* stats = inputs.Find(local);
    if (stats == nullptr) return absl::InternalError(absl::StrCat("no calibration inputs of ", linear.name));
    linears.emplace_back(arch.OutInView(tensors.at(local)), stats);
  }
  double sum = 0.0;
  int64_t count = 0;
  for (const auto& [weight, stats] : linears) {
    sum += WandaScores(weight, *stats).sum(torch::kDouble).item<double>();
    count += weight.numel();
  }
  if (count == 0) return 0.0;
  const double threshold = multiple * sum / double(count);
  int64_t outliers = 0;
  for (const auto& [weight, stats] : linears) outliers += (WandaScores(weight, *stats) > threshold).sum().item<int64_t>();
  return double(outliers) / double(count);
}

absl::StatusOr<std::vector<double>> MeasureOutlierRatios(const BlockRunner& runner, const torch::Tensor& windows,
                                                         double multiple, const PruneObserver& observer) {
  const Architecture& arch = runner.arch();
  torch::Tensor hidden = runner.Embed(windows);
  std::vector<double> ratios;
  for (int b = 0; b < arch.num_blocks(); ++b) {
    if (observer.cancelled && observer.cancelled()) return absl::CancelledError("job cancelled");
    TensorMap block;
    {
      auto timed = Timed(observer, "load");
      block = runner.LoadBlock(b);
    }
    // Wanda's input norms only: no Gram matrices.
    BlockInputs inputs([](const std::string&) { return InputsToGather{/*gram=*/false}; });
    const LinearInputs observe = [&inputs](const std::string& name, const torch::Tensor& x) { inputs.Observe(name, x); };
    {
      auto timed = Timed(observer, "calibrate");
      hidden = runner.Run(b, block, hidden, &observe);
    }
    SHEARS_ASSIGN_OR_RETURN(double ratio, OutlierRatio(arch, b, block, inputs, multiple));
    ratios.push_back(ratio);
    if (observer.on_progress) {
      observer.on_progress("allocating", double(b + 1) / arch.num_blocks(),
                           absl::StrFormat("OWL: block %d has %.3f%% outliers", b, 100.0 * ratio));
    }
  }
  return ratios;
}

absl::StatusOr<SearchSpace> OwlSpace(const Architecture& arch, double target, double max_deviation) {
  return SearchSpace::For(arch, target, 2.0 * max_deviation);
}

Configuration ConfigurationOf(const SearchSpace& space, const std::vector<double>& block_sparsity) {
  Configuration config;
  for (const auto& module : space.modules()) config.push_back(block_sparsity.at(module.block));
  return space.Realized(config);
}

absl::StatusOr<PruneReport> PruneWithOwl(const PruneOptions& options, const PruneObserver& observer) {
  const OwlOptions owl = OwlWithDefaults(options.owl);
  if (observer.on_progress) observer.on_progress("loading", 0.0, absl::StrCat("reading ", options.model_dir));
  SHEARS_ASSIGN_OR_RETURN(auto model, ModelDir::Open(options.model_dir));
  if (!SparsityFormat(model->config()).empty()) {
    return absl::InvalidArgumentError("model_uri: ALLOCATION_OWL measures a dense model, not a compressed one");
  }
  SHEARS_ASSIGN_OR_RETURN(auto arch, MakeArchitecture(model->config()));
  SHEARS_RETURN_IF_ERROR(arch->CheckWeights(*model));
  SHEARS_ASSIGN_OR_RETURN(const torch::Device device, ParseDevice(options.device));
  SHEARS_ASSIGN_OR_RETURN(SearchSpace space, OwlSpace(*arch, options.target_sparsity, owl.max_deviation));
  std::vector<double> ratios;
  {
    torch::NoGradGuard no_grad;
    JobDatasets data(*model, arch->config(), &observer);
    SHEARS_ASSIGN_OR_RETURN(torch::Tensor windows, data.CalibrationWindows(*options.calibration));
    BlockRunner runner(*model, *arch, device);
    SHEARS_ASSIGN_OR_RETURN(ratios, MeasureOutlierRatios(runner, windows, owl.outlier_multiple,
                                                         Within(observer, 0.0, kMeasureShare)));
  }
  const Configuration config =
      ConfigurationOf(space, OwlSparsities(ratios, options.target_sparsity, owl.max_deviation));

  OwlReport owl_report{owl.outlier_multiple, owl.max_deviation, {}};
  for (int b = 0; b < arch->num_blocks(); ++b) owl_report.blocks.push_back({b, ratios[b], 0.0});
  std::vector<int64_t> block_size(arch->num_blocks(), 0);
  for (size_t m = 0; m < space.modules().size(); ++m) {
    const SearchModule& module = space.modules()[m];
    owl_report.blocks[module.block].sparsity += config[m] * double(module.size);
    block_size[module.block] += module.size;
  }
  for (int b = 0; b < arch->num_blocks(); ++b) {
    if (block_size[b] > 0) owl_report.blocks[b].sparsity /= double(block_size[b]);
  }

  PruneOptions run = options;
  for (const auto& [name, sparsity] : space.LinearSparsity(config)) run.linear_sparsity[name] = sparsity;
  SHEARS_ASSIGN_OR_RETURN(PruneReport report,
                          RunPruningPass(run, Within(observer, kMeasureShare, 1.0 - kMeasureShare)));
  report.owl = std::move(owl_report);
  return report;
}

}  // namespace shears::engine
