#pragma once
// Layer removal (ShortGPT, Men et al. 2024): whole decoder blocks go, chosen by their Block
// Influence BI_i = 1 − mean over tokens of cos(x_i, x_{i+1}) on calibration data (the blocks
// that change their input least), or, as baselines, the last k blocks or k random ones. The
// remaining blocks are renumbered and num_hidden_layers rewritten, so the output is a smaller
// model of the same architecture.

#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/block_runner.h"

namespace shears::engine {

// Removes round(target_sparsity × blocks) blocks of `model` into options.output_dir.
absl::StatusOr<PruneReport> RemoveBlocks(const PruneOptions& options, const PruneObserver& observer,
                                         const ModelDir& model, const Architecture& arch, torch::Device device);

}  // namespace shears::engine
