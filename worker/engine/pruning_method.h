#pragma once
// The interface every pruning method implements, and the factory that picks one for a job.

#include <memory>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/prune_options.h"

namespace shears::engine {

// A method prunes a model one decoder block at a time. A calibrated one first sees the inputs
// of the block's linear layers on the calibration windows (as the already pruned blocks before
// it produce them), then prunes each linear.
class PruningMethod {
 public:
  virtual ~PruningMethod() = default;
  // True makes the executor run the calibration windows through each block before pruning it.
  virtual bool NeedsCalibration() const { return false; }
  // The input of linear `name` (its weight's name within the block) for one batch of windows.
  virtual void Observe(const std::string& name, const torch::Tensor& input) {}
  // Zeroes a `sparsity` fraction of linear `name`'s F32 `weight` in place (any device).
  virtual absl::Status PruneLinear(const std::string& name, torch::Tensor& weight, double sparsity) = 0;
  // The block is done: statistics gathered for it can go.
  virtual void EndBlock() {}
};

absl::StatusOr<std::unique_ptr<PruningMethod>> MakePruningMethod(const PruneOptions& options);

}  // namespace shears::engine
