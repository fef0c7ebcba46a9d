#include "worker/engine/methods/sparsegpt.h"

#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/methods/masks.h"

namespace shears::engine {
namespace {

constexpr int64_t kBlockSize = 128;
constexpr int64_t kSubBlock = 16;
constexpr int kDampingAttempts = 6;

// The upper Cholesky factor of (H + λI)⁻¹, raising λ until H + λI is positive definite. λ goes
// onto H's diagonal in place, and each factor is dropped as soon as the next is made: at an
// 11008-wide input each of these matrices is 485 MB.
absl::StatusOr<torch::Tensor> InverseCholesky(torch::Tensor& hessian, double damping) {
  const double mean_diagonal = hessian.diagonal().mean().item<double>();
  double added = 0.0;
  for (int attempt = 0; attempt < kDampingAttempts; ++attempt, damping *= 10) {
    hessian.diagonal().add_(damping * mean_diagonal - added);
    added = damping * mean_diagonal;
    torch::Tensor lower, info;
    std::tie(lower, info) = torch::linalg_cholesky_ex(hessian);
    if (info.item<int64_t>() != 0) continue;
    torch::Tensor inverse = torch::cholesky_inverse(lower);
    lower.reset();
    auto [upper, inverse_info] = torch::linalg_cholesky_ex(inverse, /*upper=*/true);
    if (inverse_info.item<int64_t>() == 0) return upper;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("the calibration inputs' Hessian is not positive definite even with dampening ", damping / 10,
                   "; use more calibration samples"));
}

}  // namespace

absl::StatusOr<SparseGptHessian> PrepareHessian(torch::Tensor hessian, double damping) {
  // Inputs that were never active carry no information: their Hessian row is made harmless.
  auto dead = hessian.diagonal() == 0;
  hessian.diagonal().masked_fill_(dead, 1.0);
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor factor, InverseCholesky(hessian, damping));
  return SparseGptHessian{std::move(factor), std::move(dead)};
}

absl::Status SparseGptPrune(torch::Tensor& weight, torch::Tensor hessian, const SparsityTarget& target,
                            double damping) {
  SHEARS_ASSIGN_OR_RETURN(SparseGptHessian prepared, PrepareHessian(hessian.clone(), damping));
  return SparseGptPrune(weight, prepared, target);
}

absl::Status SparseGptPrune(torch::Tensor& weight, const SparseGptHessian& hessian, const SparsityTarget& target) {
  const int64_t rows = weight.size(0), columns = weight.size(1);
  auto W = weight.to(torch::kFloat32).clone();
  W.masked_fill_(hessian.dead.unsqueeze(0), 0.0);
  const torch::Tensor* Hinv = &hessian.inverse_factor;

  // Blocks, and the sub-blocks within them, hold whole groups of M.
  const int64_t block_size = target.n_m() ? std::max<int64_t>(target.m, kBlockSize - kBlockSize % target.m) : kBlockSize;
  const int64_t sub_block = target.n_m() ? std::max<int64_t>(target.m, kSubBlock - kSubBlock % target.m) : kSubBlock;
  int64_t pruned = 0;  // so far, so that the matrix as a whole lands on PrunedCount
  for (int64_t i1 = 0; i1 < columns; i1 += block_size) {
    const int64_t i2 = std::min(i1 + block_size, columns), count = i2 - i1;
    // The block transposed, [count, rows]: each column of W is a contiguous row here.
    auto W1 = W.slice(1, i1, i2).t().contiguous();
    auto Q1 = torch::zeros_like(W1);
    auto Err1 = torch::zeros_like(W1);
    auto Hinv1 = Hinv->slice(0, i1, i2).slice(1, i1, i2);
    auto d = Hinv1.diagonal();

    torch::Tensor mask1 = torch::zeros_like(W1, torch::kBool);
    if (!target.n_m()) {
      const int64_t k = PrunedCount(rows * i2, target.sparsity) - pruned;
      mask1 = LowestEntries(W.slice(1, i1, i2).square() / d.square().unsqueeze(0), k).t().contiguous();
      pruned += k;
    }
    // The paper's lazy batch updates, twice over: a column's error reaches the rest of its
    // sub-block at once (a rank-1 update), the rest of the block after the sub-block (rank 16),
    // the rest of the matrix after the block (rank 128) -- the same arithmetic as updating every
    // later column after each one, with most of it in matrix products.
    for (int64_t j1 = 0; j1 < count; j1 += sub_block) {
      const int64_t j2 = std::min(j1 + sub_block, count);
      for (int64_t i = j1; i < j2; ++i) {
        if (target.n_m() && i % target.m == 0) {
          // The group's mask is chosen once the errors of the columns before it are in.
          auto scores = W1.slice(0, i, i + target.m).square().t() / d.slice(0, i, i + target.m).square().unsqueeze(0);
          mask1.slice(0, i, i + target.m).copy_(PruneMask(scores, target, MaskScope::kRow).t());
        }
        auto w = W1[i];
        auto q = w.masked_fill(mask1[i], 0.0);
        Q1[i].copy_(q);
        auto err = (w - q) / d[i];
        W1.slice(0, i, j2).addr_(Hinv1[i].slice(0, i, j2), err, /*beta=*/1, /*alpha=*/-1);
        Err1[i].copy_(err);
      }
      W1.slice(0, j2).addmm_(Hinv1.slice(0, j1, j2).slice(1, j2).t(), Err1.slice(0, j1, j2), /*beta=*/1, /*alpha=*/-1);
    }
    W.slice(1, i1, i2).copy_(Q1.t());
    W.slice(1, i2).addmm_(Err1.t(), Hinv->slice(0, i1, i2).slice(1, i2), /*beta=*/1, /*alpha=*/-1);
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

absl::Status BlockHessians::Prune(LinearToPrune& linear, const SparsityTarget& target) {
  SHEARS_ASSIGN_OR_RETURN(const SparseGptHessian* hessian, Of(*linear.inputs));
  return SparseGptPrune(linear.weight, *hessian, target);
}

absl::Status SparseGptPruning::PruneBlock(BlockToPrune& block) {
  hessians_.Clear();
  absl::Status status = PruningMethod::PruneBlock(block);
  hessians_.Clear();
  return status;
}

absl::Status SparseGptPruning::PruneLinear(LinearToPrune& linear, const SparsityTarget& target) {
  return hessians_.Prune(linear, target);
}

}  // namespace shears::engine
