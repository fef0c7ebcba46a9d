#pragma once
// The interface every pruning method implements, and the factory that picks one for a job.

#include <memory>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/prune_options.h"

namespace shears::engine {

class PruningMethod {
 public:
  virtual ~PruningMethod() = default;
  // Zeroes a `sparsity` fraction of `weight` in place (any floating dtype, any device).
  virtual absl::Status PruneLinear(torch::Tensor& weight, double sparsity) = 0;
};

absl::StatusOr<std::unique_ptr<PruningMethod>> MakePruningMethod(const PruneOptions& options);

}  // namespace shears::engine
