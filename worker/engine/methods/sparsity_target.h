#pragma once
// What one weight matrix is pruned to, as the methods and masks see it.

#include <cstdint>

namespace shears::engine {

// How much of each weight matrix goes: a fraction, or N:M (at most n non-zero weights in every
// group of m consecutive inputs of a row, the layout sparse tensor cores run).
struct SparsityTarget {
  double sparsity = 0.0;
  int n = 0, m = 0;  // 0: unstructured
  // Prune exactly round(sparsity × size) of the matrix even where the method compares weights
  // within rows (Wanda): each row loses the same number and the rows whose next score is lowest
  // one more. Per-layer sparsities (the predictor search) set it, so that a configuration's total
  // is exact.
  bool exact_count = false;
  bool n_m() const { return m > 0; }
};

}  // namespace shears::engine
