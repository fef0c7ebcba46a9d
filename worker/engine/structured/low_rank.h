#pragma once
// Low-rank pruning (METHOD_LOW_RANK, STRUCTURE_RANK): every linear weight of the decoder blocks is
// replaced by factors W ≈ U·V of a chosen rank, or kept whole where factors would not be smaller.
// Two ways to choose the factors:
//   SVD   training-free: the SVD of W·L, where L Lᵀ is the Gram matrix of the layer's calibration
//         inputs, so that dropping a component costs exactly its share of ‖W X‖² (the error on
//         the real activations, not on the weights). Ranks are allocated across all matrices by
//         one Lagrange multiplier: each matrix takes the rank (or whole storage) minimizing
//         relative error + λ·parameters, and λ is bisected to meet the parameter target.
//   FLOP  learned during fine-tuning (flop.h).
// The output stores the factors with their ranks in config.json (kLowRankKey), which the engine
// loads; or, on request, the products written back as dense weights.

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture.h"

namespace shears::engine {

// One weight's spectrum: tail[r] is the relative error of keeping its r leading components.
struct Spectrum {
  torch::Tensor tail;  // F64 [k + 1], tail[0] = 1, tail[k] = 0
  int64_t rows = 0, columns = 0;
};

// The rank each matrix keeps (0: stored whole) so that the parameters stay within `budget`, or
// INVALID_ARGUMENT when even rank 1 everywhere exceeds it.
absl::StatusOr<std::vector<int64_t>> AllocateRanks(const std::vector<Spectrum>& spectra, int64_t budget);

absl::StatusOr<PruneReport> PruneLowRank(const PruneOptions& options, const PruneObserver& observer,
                                         const ModelDir& model, const Architecture& arch, torch::Device device);

}  // namespace shears::engine
