#pragma once

#include <cstdint>

#include "worker/engine/methods/pruning_method.h"

namespace shears::engine {

// The floor every method must beat: remove weights chosen uniformly at random within each matrix
// (within each group of M for N:M). The choice depends only on the seed and the layer's name, so
// a job gives the same model on every run, device and resumed attempt.
class RandomPruning final : public PruningMethod {
 public:
  explicit RandomPruning(uint64_t seed) : seed_(seed) {}
  absl::Status PruneLinear(LinearToPrune& linear, const SparsityTarget& target) override;

 private:
  uint64_t seed_;
};

}  // namespace shears::engine
