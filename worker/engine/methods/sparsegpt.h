#pragma once

#include <map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/methods/pruning_method.h"

namespace shears::engine {

// What SparseGPT needs of a Hessian H = 2XXᵀ/n: the upper Cholesky factor of (H + λI)⁻¹, and the
// inputs that were never active (zero diagonal), whose weights carry no information and go.
struct SparseGptHessian {
  torch::Tensor inverse_factor;  // F32 [in, in]
  torch::Tensor dead;            // bool [in]
};

// λ is `damping` times H's mean diagonal; a Hessian that is still not positive definite gets ten
// times more, up to a few times. Works in `hessian` itself (pass a copy to keep it).
absl::StatusOr<SparseGptHessian> PrepareHessian(torch::Tensor hessian, double damping = 0.01);

// SparseGPT (Frantar & Alistarh 2023): prune `weight` [out, in] (F32, in place) to `target` and
// update the surviving weights to compensate. Columns go in blocks of up to 128 with lazy
// updates; the mask is chosen per block by w²/[H⁻¹]²_jj (per group of M for N:M).
absl::Status SparseGptPrune(torch::Tensor& weight, const SparseGptHessian& hessian, const SparsityTarget& target);
absl::Status SparseGptPrune(torch::Tensor& weight, torch::Tensor hessian, const SparsityTarget& target,
                            double damping = 0.01);

// One block's prepared Hessians, one for each distinct input its linears read: q, k and v share
// one, as gate and up do, so the inversion (the solve's largest cost) runs once for each.
class BlockHessians {
 public:
  absl::StatusOr<const SparseGptHessian*> Of(const LinearInputStats& inputs);
  // SparseGPT's solve of `linear` against the Hessian of its inputs.
  absl::Status Prune(LinearToPrune& linear, const SparsityTarget& target);
  void Clear() { prepared_.clear(); }

 private:
  std::map<const LinearInputStats*, SparseGptHessian> prepared_;
};

class SparseGptPruning final : public PruningMethod {
 public:
  bool NeedsCalibration() const override { return true; }
  InputsToGather InputsOf(const std::string&, const MlpLayout&) const override {
    return InputsToGather{/*gram=*/true, /*inputs=*/false};
  }
  absl::Status PruneBlock(BlockToPrune& block) override;
  absl::Status PruneLinear(LinearToPrune& linear, const SparsityTarget& target) override;

 private:
  BlockHessians hessians_;
};

}  // namespace shears::engine
