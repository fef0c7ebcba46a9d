#include "worker/engine/methods/wanda.h"

#include "worker/engine/methods/masks.h"

namespace shears::engine {

torch::Tensor WandaScores(const torch::Tensor& weight, const LinearInputStats& inputs) {
  return weight.abs() * inputs.InputNorms().unsqueeze(0);
}

absl::Status WandaPruning::PruneLinear(LinearToPrune& linear, const SparsityTarget& target) {
  ZeroLowestScores(linear.weight, WandaScores(linear.weight, *linear.inputs), target, MaskScope::kRow);
  return absl::OkStatus();
}

}  // namespace shears::engine
