#pragma once

#include "worker/engine/api/options.h"
#include "worker/engine/methods/pruning_method.h"
#include "worker/engine/methods/sparsegpt.h"

namespace shears::engine {

// SparseLLM (Bai et al. 2024): prunes each MLP as a whole instead of one linear at a time. The
// MLP's pre-activation z (and the gate's output s when gated) and its activation p become free
// variables tied by penalties to the dense MLP's output Y on the calibration tokens:
//
//   α‖z − W_up X‖² + γ‖p − σ(z)‖² + β‖Y − W_down p‖²      (σ(s)·z in place of σ(z) when gated)
//
// and are updated alternately with the weights: the weights by least squares onto the current
// variables, then pruned with SparseGPT's solver (W_down's Hessian rebuilt from p); p by a
// regularized linear solve; z in closed form; s (and z under GELU) by gradient steps. Of the
// iterates, the one whose pruned MLP reproduces Y best on the calibration tokens is kept (the
// first is SparseGPT's). Attention projections are pruned by SparseGPT alone.
class SparseLlmPruning final : public PruningMethod {
 public:
  explicit SparseLlmPruning(const SparseLlmOptions& options) : options_(options) {}
  bool NeedsCalibration() const override { return true; }
  // Every linear's Gram matrix but the down projection's, whose Hessian is rebuilt from p; the
  // MLP's inputs X whole.
  InputsToGather InputsOf(const std::string& name, const MlpLayout& mlp) const override {
    return InputsToGather{/*gram=*/name != mlp.down, /*inputs=*/name == mlp.up || name == mlp.gate};
  }
  absl::Status PruneBlock(BlockToPrune& block) override;
  absl::Status PruneLinear(LinearToPrune& linear, const SparsityTarget& target) override;

 private:
  absl::Status PruneBlockLinears(BlockToPrune& block);
  absl::Status PruneMlp(BlockToPrune& block);

  SparseLlmOptions options_;
  BlockHessians hessians_;  // the block's inputs' (every iteration prunes up and gate from X's)
};

}  // namespace shears::engine
