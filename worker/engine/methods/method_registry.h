#pragma once
// Picks the per-linear pruning method a job names; above the methods it knows, never beside their
// interface.

#include <memory>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/methods/pruning_method.h"

namespace shears::engine {

// INVALID_ARGUMENT for the methods that do not prune linear by linear (the structured methods and
// the search have drivers of their own).
absl::StatusOr<std::unique_ptr<PruningMethod>> MakePruningMethod(const PruneOptions& options);

}  // namespace shears::engine
