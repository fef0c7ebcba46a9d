#pragma once
// METHOD_PREDICTOR_SEARCH (Ji, Cao, Liu: "Pruning large language models via accuracy predictor"):
// measure sampled per-module sparsities, learn their perplexity with gradient-boosted trees,
// search with the trees as the guide, and prune with the best configuration found.

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"

namespace shears::engine {

// The defaults of SearchOptions' zeros.
inline constexpr int kDefaultMeasuredConfigurations = 60;
inline constexpr int kDefaultSearchBudget = 2000;
// Chosen on the development models of bench/models/README.md (0.15 before: 0.25 gained more on all four).
inline constexpr double kDefaultMaxDeviation = 0.25;
inline constexpr int kDefaultScoreWindows = 8;

// Searches, then prunes options.model_dir into options.output_dir with the base method at the
// chosen sparsities; with evaluation data the uniform configuration is pruned and evaluated too.
// Expects options that passed CheckJobRules.
absl::StatusOr<PruneReport> SearchAndPrune(const PruneOptions& options, const PruneObserver& observer);

}  // namespace shears::engine
