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

// Zeros, in place, the `k` entries of smallest magnitude of `weight`, the ones
// LowestPerRow(weight.abs().reshape({1, -1}), k) marks, from the bits of a BF16 or F16 tensor
// (contiguous, on the CPU): one counting pass over its 2^15 magnitudes and one zeroing pass, with
// no F32 copy, no scores and no mask. Returns false, and changes nothing, for any other tensor.
bool ZeroSmallestMagnitudes(torch::Tensor& weight, int64_t k);

}  // namespace shears::engine
