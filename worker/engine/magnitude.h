#pragma once

#include "worker/engine/pruning_method.h"

namespace shears::engine {

// The baseline of every paper: remove the weights of smallest absolute value within each matrix.
class MagnitudePruning final : public PruningMethod {
 public:
  absl::Status PruneLinear(const std::string& name, torch::Tensor& weight, double sparsity) override;
};

}  // namespace shears::engine
