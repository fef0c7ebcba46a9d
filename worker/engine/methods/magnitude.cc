#include "worker/engine/methods/magnitude.h"

#include "worker/engine/methods/masks.h"
#include "worker/engine/methods/selection.h"

namespace shears::engine {

absl::Status MagnitudePruning::PruneLinear(LinearToPrune& linear, const SparsityTarget& target) {
  // Weights kept in half precision are pruned from their own bits.
  if (!target.n_m() && ZeroSmallestMagnitudes(linear.weight, PrunedCount(linear.weight.numel(), target.sparsity))) {
    return absl::OkStatus();
  }
  ZeroLowestScores(linear.weight, linear.weight.abs(), target, MaskScope::kMatrix);
  return absl::OkStatus();
}

}  // namespace shears::engine
