#include "worker/engine/magnitude.h"

#include "worker/engine/masks.h"

namespace shears::engine {

absl::Status MagnitudePruning::PruneLinear(LinearToPrune& linear, const SparsityTarget& target) {
  ZeroLowestScores(linear.weight, linear.weight.abs(), target, MaskScope::kMatrix);
  return absl::OkStatus();
}

}  // namespace shears::engine
