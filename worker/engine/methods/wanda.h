#pragma once

#include "worker/engine/methods/pruning_method.h"

namespace shears::engine {

// Wanda's score of every weight, |W_ij|·‖X_j‖₂, for `weight` [out, in] and its inputs' statistics.
torch::Tensor WandaScores(const torch::Tensor& weight, const LinearInputStats& inputs);

// Wanda (Sun et al. 2023): score |W_ij|·‖X_j‖₂ over the calibration tokens and remove the lowest
// within each output row (within each group of M for N:M). No weight update.
class WandaPruning final : public PruningMethod {
 public:
  bool NeedsCalibration() const override { return true; }
  absl::Status PruneLinear(LinearToPrune& linear, const SparsityTarget& target) override;
};

}  // namespace shears::engine
