#pragma once

#include "worker/engine/methods/pruning_method.h"

namespace shears::engine {

// The baseline of every paper: remove the weights of smallest absolute value within each matrix
// (within each group of M for N:M).
class MagnitudePruning final : public PruningMethod {
 public:
  absl::Status PruneLinear(LinearToPrune& linear, const SparsityTarget& target) override;
  bool PrunesStoredDtype() const override { return true; }
};

}  // namespace shears::engine
