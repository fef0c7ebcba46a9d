#pragma once

#include "absl/status/status.h"
#include "worker/engine/methods/pruning_method.h"

namespace shears::engine {

// SparseGPT (Frantar & Alistarh 2023): prune `weight` [out, in] (F32, in place) to `target` and
// update the surviving weights to compensate, given the Hessian H = 2XXᵀ/n of the layer's inputs.
// Columns go in blocks of up to 128 with lazy updates; the mask is chosen per block by
// w²/[H⁻¹]²_jj (per group of M for N:M). `damping` is the fraction of H's mean diagonal added to
// it; a Hessian that is still not positive definite gets ten times more, up to a few times.
absl::Status SparseGptPrune(torch::Tensor& weight, torch::Tensor hessian, const SparsityTarget& target,
                            double damping = 0.01);

class SparseGptPruning final : public PruningMethod {
 public:
  bool NeedsCalibration() const override { return true; }
  absl::Status PruneLinear(LinearToPrune& linear, const SparsityTarget& target) override;
};

}  // namespace shears::engine
