#pragma once
// Exact selection of the lowest scores in linear time. A sort of every matrix (45 million entries
// for one of Llama-2-7B's MLP matrices) costs seconds; a radix selection finds the same entries in
// a few passes over the scores, so pruning a real model is bound by moving its bytes.

#include <torch/torch.h>

namespace shears::engine {

// Marks the `k` lowest entries of every row of `scores` [rows, cols] (any floating dtype, any
// device), as the first k of a stable ascending sort would: among equal scores the lower index
// goes first, and -0.0 equals 0.0.
torch::Tensor LowestPerRow(const torch::Tensor& scores, int64_t k);

}  // namespace shears::engine
