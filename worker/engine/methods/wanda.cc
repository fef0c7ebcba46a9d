#include "worker/engine/methods/wanda.h"

#include "worker/engine/methods/masks.h"

namespace shears::engine {

absl::Status WandaPruning::PruneLinear(LinearToPrune& linear, const SparsityTarget& target) {
  auto scores = linear.weight.abs() * linear.inputs->InputNorms().unsqueeze(0);
  ZeroLowestScores(linear.weight, scores, target, MaskScope::kRow);
  return absl::OkStatus();
}

}  // namespace shears::engine
