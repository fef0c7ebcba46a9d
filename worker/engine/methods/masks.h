#pragma once
// Turning importance scores into the set of weights to remove, shared by every score-based method.

#include <torch/torch.h>

#include "worker/engine/methods/sparsity_target.h"

namespace shears::engine {

// How many of `numel` weights a `sparsity` fraction is: round-to-nearest, so every layer lands
// within half an element of the target.
int64_t PrunedCount(int64_t numel, double sparsity);

// Marks the `k` lowest entries of `scores` (any shape), ties to the lower index.
torch::Tensor LowestEntries(const torch::Tensor& scores, int64_t k);

// Where the lowest scores compete: across the whole matrix (magnitude's classic choice) or
// within each output row (Wanda's).
enum class MaskScope { kMatrix, kRow };

// The weights to remove, as a bool tensor of `scores`' shape [out, in]: the PrunedCount lowest
// scores within `scope`, or for an N:M target the m − n lowest of every group of m consecutive
// inputs of each row. Ties go to the lower index, so the choice is the same on every device.
torch::Tensor PruneMask(const torch::Tensor& scores, const SparsityTarget& target, MaskScope scope);

// Zeroes `weight` where PruneMask(scores, ...) is set, in place.
void ZeroLowestScores(torch::Tensor& weight, const torch::Tensor& scores, const SparsityTarget& target,
                      MaskScope scope);

// The fraction an N:M target removes, or the plain sparsity.
double TargetFraction(const SparsityTarget& target);

}  // namespace shears::engine
