#include "worker/engine/methods/magnitude.h"

#include "worker/engine/methods/masks.h"

namespace shears::engine {

absl::Status MagnitudePruning::PruneLinear(LinearToPrune& linear, const SparsityTarget& target) {
  ZeroLowestScores(linear.weight, linear.weight.abs(), target, MaskScope::kMatrix);
  return absl::OkStatus();
}

}  // namespace shears::engine
