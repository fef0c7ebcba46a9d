#include "worker/engine/masks.h"

#include <cmath>

namespace shears::engine {

int64_t PrunedCount(int64_t numel, double sparsity) {
  return std::min<int64_t>(numel, std::llround(sparsity * static_cast<double>(numel)));
}

void ZeroLowestScores(torch::Tensor& weight, const torch::Tensor& scores, double sparsity) {
  const int64_t k = PrunedCount(weight.numel(), sparsity);
  if (k == 0) return;
  // A stable sort makes the choice among equal scores deterministic across runs and devices.
  auto order = std::get<1>(scores.reshape(-1).to(torch::kFloat32).sort(c10::optional<bool>(true), /*dim=*/0));
  auto flat = weight.view(-1);
  flat.index_fill_(0, order.slice(0, 0, k), 0);
}

}  // namespace shears::engine
