#pragma once
// Scores the predictor search's configurations cheaply, as it needs dozens: the dense model's
// blocks, every linear's calibration statistics and each block's influence are gathered in one
// pass; a configuration then prunes each linear from the dense statistics (not from the inputs
// of the blocks pruned before it, as the final run does) and runs the held-out windows through.

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/methods/linear_inputs.h"
#include "worker/engine/methods/pruning_method.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/allocation/search_space.h"

namespace shears::engine {

class ConfigurationScorer {
 public:
  // `statistics` [N, T] windows give the linears' statistics; `held_out` [S, T] windows score.
  // Holds every block of the model in memory.
  static absl::StatusOr<std::unique_ptr<ConfigurationScorer>> Build(const BlockRunner& runner,
                                                                   const SearchSpace& space, Method base_method,
                                                                   const torch::Tensor& statistics,
                                                                   const torch::Tensor& held_out);

  // Perplexity of the held-out windows with every linear pruned as `config` says.
  absl::StatusOr<double> Score(const Configuration& config);

  // What the predictor learns from (the paper's per-layer ratios and layer importance): each
  // module's sparsity, its reconstruction error at that sparsity times its block's influence, and
  // the sum of those.
  std::vector<float> Features(const Configuration& config) const;

  const std::vector<double>& block_influence() const { return block_influence_; }
  // OWL's outlier share of every block (allocation/owl.h), from the dense statistics.
  absl::StatusOr<std::vector<double>> OutlierRatios(double multiple) const;

 private:
  ConfigurationScorer(const BlockRunner& runner, const SearchSpace& space, std::unique_ptr<PruningMethod> method)
      : runner_(runner), space_(space), method_(std::move(method)) {}
  // `weight_name`'s dense weight pruned by the base method to `count` weights, as the method
  // sees it ([out, in]).
  absl::StatusOr<torch::Tensor> Pruned(int block, const std::string& weight_name, int64_t count);
  // The indices of the block's `count` lowest-magnitude FFN neurons.
  torch::Tensor WeakestNeuronIndices(int block, int64_t count) const;
  // Module `m` with `counts` (one per linear, or its neurons) removed, into `block`.
  absl::Status Apply(size_t m, const int64_t* counts, TensorMap& block);
  // Module `m`'s reconstruction error at `sparsity`, measured.
  absl::StatusOr<double> MeasuredError(size_t m, double sparsity);
  // Module `m`'s reconstruction error ‖(W−Ŵ)X‖²/‖WX‖² at `sparsity`, interpolated on its grid.
  double ModuleError(size_t m, double sparsity) const;

  const BlockRunner& runner_;
  const SearchSpace& space_;
  std::unique_ptr<PruningMethod> method_;
  std::vector<TensorMap> blocks_;                        // dense, relative names
  std::vector<std::unique_ptr<BlockInputs>> statistics_;  // per block
  std::vector<double> block_influence_;
  std::vector<torch::Tensor> neuron_order_;   // searching neurons: each block's, lowest magnitude first
  torch::Tensor held_out_ids_, held_out_hidden_;
  std::vector<double> grid_;                  // sparsities the errors were measured at
  std::vector<std::vector<double>> errors_;   // per module, per grid point
};

}  // namespace shears::engine
