#pragma once
// ALLOCATION_OWL (Yin et al., "Outlier Weighed Layerwise Sparsity (OWL): A Missing Secret Sauce
// for Pruning LLMs to High Sparsity"): a block whose Wanda scores |W_ij|·‖X_j‖ hold a larger share
// of outliers (scores above M times the block's mean) is pruned less. The shares, measured on the
// dense model with the calibration windows, are min-max scaled to [0, 2λ]; a block's density is
// 1 - target + its scaled share - their mean. The model then loses exactly the uniform budget.

#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/allocation/search_space.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/methods/linear_inputs.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/block_runner.h"

namespace shears::engine {

// The OWL repository's settings for LLaMA at 70% (its scripts' --Hyper_m 5 --Lamda 0.08).
inline constexpr double kDefaultOwlOutlierMultiple = 5.0;
inline constexpr double kDefaultOwlMaxDeviation = 0.08;

OwlOptions OwlWithDefaults(OwlOptions owl);

// OWL's rule: each block's sparsity from its outlier share. Their mean is `target`; equal shares
// give every block the target.
std::vector<double> OwlSparsities(const std::vector<double>& outlier_ratios, double target, double max_deviation);

// The share of block `block`'s Wanda scores above `multiple` times their mean; `tensors` holds the
// block's tensors (relative names) and `inputs` its linears' calibration statistics.
absl::StatusOr<double> OutlierRatio(const Architecture& arch, int block, const TensorMap& tensors,
                                    const BlockInputs& inputs, double multiple);

// The calibration windows [N, T] through the dense model: every block's outlier share.
absl::StatusOr<std::vector<double>> MeasureOutlierRatios(const BlockRunner& runner, const torch::Tensor& windows,
                                                         double multiple, const PruneObserver& observer);

// Per-block sparsities as a configuration of `space` (a block's attention and MLP alike), and
// `space` built wide enough to hold them: OWL's sparsities stray up to 2λ from the target.
Configuration ConfigurationOf(const SearchSpace& space, const std::vector<double>& block_sparsity);
absl::StatusOr<SearchSpace> OwlSpace(const Architecture& arch, double target, double max_deviation);

// ALLOCATION_OWL: measures the shares, allocates the exact uniform budget by OWL's rule and runs
// the method's pass at the resulting per-linear sparsities. Expects options that passed
// CheckJobRules.
absl::StatusOr<PruneReport> PruneWithOwl(const PruneOptions& options, const PruneObserver& observer);

}  // namespace shears::engine
