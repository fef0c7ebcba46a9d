#include "worker/engine/methods/sparsegpt.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/methods/masks.h"

namespace shears::engine {
namespace {

constexpr int64_t kBlockSize = 128;
constexpr int kDampingAttempts = 6;

// The upper Cholesky factor of (H + λI)⁻¹, raising λ until H + λI is positive definite.
absl::StatusOr<torch::Tensor> InverseCholesky(const torch::Tensor& hessian, double damping) {
  const double mean_diagonal = hessian.diagonal().mean().item<double>();
  const auto eye = torch::eye(hessian.size(0), hessian.options());
  for (int attempt = 0; attempt < kDampingAttempts; ++attempt, damping *= 10) {
    auto [lower, info] = torch::linalg_cholesky_ex(hessian + eye * (damping * mean_diagonal));
    if (info.item<int64_t>() != 0) continue;
    auto [upper, inverse_info] = torch::linalg_cholesky_ex(torch::cholesky_inverse(lower), /*upper=*/true);
    if (inverse_info.item<int64_t>() == 0) return upper;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("the calibration inputs' Hessian is not positive definite even with dampening ", damping / 10,
                   "; use more calibration samples"));
}

}  // namespace

absl::StatusOr<SparseGptHessian> PrepareHessian(torch::Tensor hessian, double damping) {
  // Inputs that were never active carry no information: their Hessian row is made harmless.
  hessian = hessian.clone();
  auto dead = hessian.diagonal() == 0;
  hessian.diagonal().masked_fill_(dead, 1.0);
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor factor, InverseCholesky(hessian, damping));
  return SparseGptHessian{std::move(factor), std::move(dead)};
}

absl::Status SparseGptPrune(torch::Tensor& weight, torch::Tensor hessian, const SparsityTarget& target,
                            double damping) {
  SHEARS_ASSIGN_OR_RETURN(SparseGptHessian prepared, PrepareHessian(std::move(hessian), damping));
  return SparseGptPrune(weight, prepared, target);
}

absl::Status SparseGptPrune(torch::Tensor& weight, const SparseGptHessian& hessian, const SparsityTarget& target) {
  const int64_t rows = weight.size(0), columns = weight.size(1);
  auto W = weight.to(torch::kFloat32).clone();
  W.masked_fill_(hessian.dead.unsqueeze(0), 0.0);
  const torch::Tensor* Hinv = &hessian.inverse_factor;

  // Blocks hold whole groups of M.
  const int64_t block_size = target.n_m() ? std::max<int64_t>(target.m, kBlockSize - kBlockSize % target.m) : kBlockSize;
  int64_t pruned = 0;  // so far, so that the matrix as a whole lands on PrunedCount
  for (int64_t i1 = 0; i1 < columns; i1 += block_size) {
    const int64_t i2 = std::min(i1 + block_size, columns), count = i2 - i1;
    auto W1 = W.slice(1, i1, i2).clone();
    auto Q1 = torch::zeros_like(W1);
    auto Err1 = torch::zeros_like(W1);
    auto Hinv1 = Hinv->slice(0, i1, i2).slice(1, i1, i2);
    auto d = Hinv1.diagonal();

    torch::Tensor mask1 = torch::zeros_like(W1, torch::kBool);
    if (!target.n_m()) {
      const int64_t k = PrunedCount(rows * i2, target.sparsity) - pruned;
      mask1 = LowestEntries(W1.square() / d.square().unsqueeze(0), k);
      pruned += k;
    }
    for (int64_t i = 0; i < count; ++i) {
      if (target.n_m() && i % target.m == 0) {
        // The group's mask is chosen once the errors of the columns before it are in.
        auto group = W1.slice(1, i, i + target.m);
        auto scores = group.square() / d.slice(0, i, i + target.m).square().unsqueeze(0);
        mask1.slice(1, i, i + target.m).copy_(PruneMask(scores, target, MaskScope::kRow));
      }
      auto w = W1.select(1, i);
      auto q = w.masked_fill(mask1.select(1, i), 0.0);
      Q1.select(1, i).copy_(q);
      auto err = (w - q) / d[i];
      W1.slice(1, i).sub_(err.unsqueeze(1).matmul(Hinv1.select(0, i).slice(0, i).unsqueeze(0)));
      Err1.select(1, i).copy_(err);
    }
    W.slice(1, i1, i2).copy_(Q1);
    W.slice(1, i2).sub_(Err1.matmul(Hinv->slice(0, i1, i2).slice(1, i2)));
  }
  weight.copy_(W);
  return absl::OkStatus();
}

absl::StatusOr<const SparseGptHessian*> BlockHessians::Of(const LinearInputStats& inputs) {
  auto it = prepared_.find(&inputs);
  if (it == prepared_.end()) {
    SHEARS_ASSIGN_OR_RETURN(SparseGptHessian prepared, PrepareHessian(inputs.Hessian()));
    it = prepared_.emplace(&inputs, std::move(prepared)).first;
  }
  return &it->second;
}

absl::Status SparseGptPruning::PruneBlock(BlockToPrune& block) {
  hessians_.Clear();
  absl::Status status = PruningMethod::PruneBlock(block);
  hessians_.Clear();
  return status;
}

absl::Status SparseGptPruning::PruneLinear(LinearToPrune& linear, const SparsityTarget& target) {
  SHEARS_ASSIGN_OR_RETURN(const SparseGptHessian* hessian, hessians_.Of(*linear.inputs));
  return SparseGptPrune(linear.weight, *hessian, target);
}

}  // namespace shears::engine
