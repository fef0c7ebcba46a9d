#include "worker/engine/magnitude.h"

#include "worker/engine/masks.h"

namespace shears::engine {

absl::Status MagnitudePruning::PruneLinear(const std::string&, torch::Tensor& weight, double sparsity) {
  ZeroLowestScores(weight, weight.abs(), sparsity);
  return absl::OkStatus();
}

}  // namespace shears::engine
