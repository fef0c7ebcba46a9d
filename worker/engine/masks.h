#pragma once
// Turning importance scores into zeros, shared by every score-based method.

#include <torch/torch.h>

namespace shears::engine {

// How many of `numel` weights a `sparsity` fraction is: round-to-nearest, so every layer lands
// within half an element of the target.
int64_t PrunedCount(int64_t numel, double sparsity);

// Zeroes the PrunedCount(weight.numel(), sparsity) entries of `weight` with the lowest `scores`
// (same shape; ties go to the lower index), in place.
void ZeroLowestScores(torch::Tensor& weight, const torch::Tensor& scores, double sparsity);

}  // namespace shears::engine
