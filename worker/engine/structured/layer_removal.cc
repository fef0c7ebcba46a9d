#include "worker/engine/structured/layer_removal.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/engine/analysis/redundancy.h"
#include "worker/engine/io/nemotron_nas.h"
#include "worker/engine/methods/masks.h"
#include "worker/engine/structured/rewritten_model.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {
namespace {

// The blocks to remove, in ascending order.
std::vector<int> SelectBlocks(const PruneOptions& options, int blocks, int k, const RedundancyReport* dense) {
  std::vector<int> order(blocks);
  std::iota(order.begin(), order.end(), 0);
  OrderForRemoval(options, order, [&](int a, int b) {
    return dense->blocks[a].block_influence < dense->blocks[b].block_influence;
  });
  std::vector<int> chosen(order.begin(), order.begin() + k);
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

}  // namespace

absl::StatusOr<PruneReport> RemoveBlocks(const PruneOptions& options, const PruneObserver& observer,
                                         const ModelDir& model, const Architecture& arch, torch::Device device) {
  const int blocks = arch.num_blocks();
  const int k = static_cast<int>(PrunedCount(blocks, options.target_sparsity));
  if (k >= blocks) {
    return absl::InvalidArgumentError(absl::StrCat("target_sparsity: ", options.target_sparsity, " removes ", k, " of the ",
                                                   blocks, " blocks and would leave none"));
  }
  JobDatasets data(model, arch.config(), &observer);
  BlockRunner runner(model, arch, device);
  PruneReport report;
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor calibration, MeasureDenseModel(options, observer, data, runner, report));
  // The job rules (CheckJobRules, before any driver runs) require calibration for Block Influence.
  report.removed_blocks = SelectBlocks(options, blocks, k, report.redundancy.empty() ? nullptr : &report.redundancy[0]);
  const std::set<int> removed(report.removed_blocks.begin(), report.removed_blocks.end());

  std::vector<int64_t> block_parameters(blocks, 0);
  for (const auto& file : model.files()) {
    for (const auto& info : file->tensors()) {
      if (const int b = arch.BlockOf(info.name); b >= 0) block_parameters[b] += info.numel();
    }
  }
  for (int b = 0; b < blocks; ++b) {
    report.parameters_before += block_parameters[b];
    if (!removed.count(b)) report.parameters_after += block_parameters[b];
  }
  for (int b : report.removed_blocks) {
    report.layers.push_back({arch.BlockPrefix(b), b, block_parameters[b], block_parameters[b], -1.0, 0.0});
    if (observer.on_layer) observer.on_layer(report.layers.back());
  }

  const std::vector<BlockShape> shapes = BlockShapesOf(arch.config());
  std::vector<int> kept;
  std::vector<BlockShape> kept_shapes;
  for (int b = 0; b < blocks; ++b) {
    if (removed.count(b)) continue;
    kept.push_back(b);
    kept_shapes.push_back(shapes[b]);
  }
  // A Nemotron-NAS input may have blocks without attention; the first one kept must have it.
  if (arch.config().model_type == kNemotronNasType) SHEARS_RETURN_IF_ERROR(CheckServableShapes(kept_shapes));
  const nlohmann::json config =
      ConfigWithBlocks(model.config(), arch.config(), kept, [&](int b) { return arch.BlockPrefix(b); });
  const TensorEditor edit = KeepBlocks(arch, kept);
  SHEARS_RETURN_IF_ERROR(WriteAndEvaluate(options, observer, model, edit, config,
                                          absl::StrCat("removing blocks ", absl::StrJoin(report.removed_blocks, ", ")),
                                          data, runner, device, calibration, report));
  return report;
}

}  // namespace shears::engine
