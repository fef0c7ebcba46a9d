#pragma once
// What calibrated methods learn about one linear layer's inputs on the calibration windows.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace shears::engine {

// What a linear's calibration inputs X [tokens, in] give the methods: the squared norm of every
// input over the tokens (Wanda), the Gram matrix G = XᵀX when asked for (SparseGPT's Hessian,
// whitening), X itself when asked for (SparseLLM fits weights to it by least squares), and every
// k-th token's input, from which the reconstruction error is measured without G.
struct InputsToGather {
  bool gram = true;
  bool inputs = false;
  // Keep every sample_stride-th token (counted over all calibration windows); 0 keeps none.
  int64_t sample_stride = 0;
};

class LinearInputStats {
 public:
  explicit LinearInputStats(InputsToGather what) : what_(what) {}

  // x [..., in], one batch of calibration tokens.
  void Add(const torch::Tensor& x);

  const torch::Tensor& gram() const { return gram_; }  // F32 [in, in]; undefined unless gathered
  int64_t tokens() const { return tokens_; }
  // SparseGPT's Hessian of the layer's squared error, H = 2 XᵀX / tokens.
  torch::Tensor Hessian() const { return gram_ * (2.0 / static_cast<double>(tokens_)); }
  // ‖X_j‖₂ over the tokens for every input j.
  torch::Tensor InputNorms() const { return (gram_.defined() ? gram_.diagonal() : squares_).sqrt(); }
  // The inputs [tokens, in]; defined only when kept.
  torch::Tensor Inputs() const;
  // The sampled tokens' inputs [samples, in]; undefined when none were kept.
  torch::Tensor Sample() const;

 private:
  InputsToGather what_;
  torch::Tensor gram_, squares_;
  int64_t tokens_ = 0;
  // Each joined into one tensor on first read, which then holds them alone.
  mutable std::vector<torch::Tensor> inputs_, sample_;
};

// Statistics of every linear in one block, filled as the calibration windows run through it.
// Linears that read the same tensor (q/k/v, gate/up) share one entry, so each is computed once.
class BlockInputs {
 public:
  // what(name): what to gather of linear `name`'s inputs.
  explicit BlockInputs(std::function<InputsToGather(const std::string&)> what) : what_(std::move(what)) {}

  void Observe(const std::string& name, const torch::Tensor& x);
  // Null when the linear was never observed.
  const LinearInputStats* Find(const std::string& name) const;

 private:
  std::function<InputsToGather(const std::string&)> what_;
  std::map<std::string, std::shared_ptr<LinearInputStats>> by_linear_;
  // The last input seen, held so that its storage cannot be reused by a different tensor.
  torch::Tensor last_input_;
  std::shared_ptr<LinearInputStats> last_stats_;
};

// The sample stride that keeps about `samples` of `tokens` calibration tokens (1: all of them).
int64_t SampleStride(int64_t tokens, int64_t samples);

// ‖WX − ŴX‖² / ‖WX‖² for weights [out, in] on inputs with Gram matrix `gram`:
// tr(ΔW G ΔWᵀ) / tr(W G Wᵀ). Zero when W X is zero.
double ReconstructionError(const torch::Tensor& dense, const torch::Tensor& pruned, const torch::Tensor& gram);
// ‖Y − Ŷ‖² / ‖Y‖² for a layer's outputs on the same inputs (the sampled tokens') before and after
// pruning. Zero when Y is zero.
double ReconstructionError(const torch::Tensor& dense_outputs, const torch::Tensor& pruned_outputs);

}  // namespace shears::engine
