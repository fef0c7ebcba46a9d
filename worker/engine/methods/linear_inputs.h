#pragma once
// What calibrated methods learn about one linear layer's inputs on the calibration windows.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace shears::engine {

// The Gram matrix G = Σ x xᵀ over the calibration tokens, from which SparseGPT's Hessian,
// Wanda's input norms and the reconstruction error all follow, and optionally the inputs
// themselves (SparseLLM fits weights to them by least squares).
class LinearInputStats {
 public:
  explicit LinearInputStats(bool keep_inputs) : keep_inputs_(keep_inputs) {}

  // x [..., in], one batch of calibration tokens.
  void Add(const torch::Tensor& x);

  const torch::Tensor& gram() const { return gram_; }  // F32 [in, in]
  int64_t tokens() const { return tokens_; }
  // SparseGPT's Hessian of the layer's squared error, H = 2 XᵀX / tokens.
  torch::Tensor Hessian() const { return gram_ * (2.0 / static_cast<double>(tokens_)); }
  // ‖X_j‖₂ over the tokens for every input j.
  torch::Tensor InputNorms() const { return gram_.diagonal().clamp_min(0).sqrt(); }
  // The inputs [tokens, in]; defined only when kept.
  torch::Tensor Inputs() const;

 private:
  bool keep_inputs_;
  torch::Tensor gram_;
  int64_t tokens_ = 0;
  std::vector<torch::Tensor> inputs_;
};

// Statistics of every linear in one block, filled as the calibration windows run through it.
// Linears that read the same tensor (q/k/v, gate/up) share one entry, so each Gram matrix is
// computed once.
class BlockInputs {
 public:
  // keep(name): whether linear `name`'s inputs are kept whole.
  explicit BlockInputs(std::function<bool(const std::string&)> keep) : keep_(std::move(keep)) {}

  void Observe(const std::string& name, const torch::Tensor& x);
  // Null when the linear was never observed.
  const LinearInputStats* Find(const std::string& name) const;

 private:
  std::function<bool(const std::string&)> keep_;
  std::map<std::string, std::shared_ptr<LinearInputStats>> by_linear_;
  // The last input seen, held so that its storage cannot be reused by a different tensor.
  torch::Tensor last_input_;
  std::shared_ptr<LinearInputStats> last_stats_;
};

// ‖WX − ŴX‖² / ‖WX‖² for weights [out, in] on inputs with Gram matrix `gram`:
// tr(ΔW G ΔWᵀ) / tr(W G Wᵀ). Zero when W X is zero.
double ReconstructionError(const torch::Tensor& dense, const torch::Tensor& pruned, const torch::Tensor& gram);

}  // namespace shears::engine
