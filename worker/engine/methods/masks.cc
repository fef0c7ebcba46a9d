#include "worker/engine/methods/masks.h"

#include <cmath>

#include "worker/engine/methods/selection.h"

namespace shears::engine {
namespace {

// Marks `k` entries of `scores` [rows, cols] by rows: floor(k / rows) lowest in every row, and one
// more in the k mod rows rows whose next lowest score is lowest.
torch::Tensor LowestPerRowExactly(const torch::Tensor& scores, int64_t k) {
  const int64_t rows = scores.size(0), each = k / rows, extra = k % rows;
  auto mask = LowestPerRow(scores, each);
  if (extra == 0) return mask;
  auto next = LowestPerRow(scores, each + 1) & ~mask;  // one entry a row
  auto rows_taking_one = LowestEntries(scores.masked_select(next), extra);
  return mask | (next & rows_taking_one.unsqueeze(1));
}

}  // namespace

int64_t PrunedCount(int64_t numel, double sparsity) {
  return std::min<int64_t>(numel, std::llround(sparsity * static_cast<double>(numel)));
}

double TargetFraction(const SparsityTarget& target) {
  return target.n_m() ? 1.0 - double(target.n) / double(target.m) : target.sparsity;
}

torch::Tensor PruneMask(const torch::Tensor& scores, const SparsityTarget& target, MaskScope scope) {
  const int64_t rows = scores.size(0), cols = scores.size(1);
  if (target.n_m()) {
    auto groups = scores.reshape({rows * cols / target.m, target.m});
    return LowestPerRow(groups, target.m - target.n).view({rows, cols});
  }
  if (scope == MaskScope::kRow && target.exact_count) return LowestPerRowExactly(scores, PrunedCount(rows * cols, target.sparsity));
  if (scope == MaskScope::kRow) return LowestPerRow(scores, PrunedCount(cols, target.sparsity));
  return LowestEntries(scores, PrunedCount(scores.numel(), target.sparsity));
}

torch::Tensor LowestEntries(const torch::Tensor& scores, int64_t k) {
  return LowestPerRow(scores.reshape({1, -1}), k).view(scores.sizes());
}

void ZeroLowestScores(torch::Tensor& weight, const torch::Tensor& scores, const SparsityTarget& target,
                      MaskScope scope) {
  weight.masked_fill_(PruneMask(scores, target, scope), 0.0);
}

}  // namespace shears::engine
