#pragma once
// The engine's front door: one whole job, from the options the worker translated out of a JobSpec
// to the pruned model in options.output_dir and its report.

#include <memory>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"

namespace shears::engine {

class PruningMethod;

// Checks the options against the job rules, then runs the predictor search or one pruning pass.
// Writes into options.output_dir the pruned weights (same file layout, names and dtypes as the
// input, or a smaller model for the structured methods), config.json, the index of a sharded
// model and the tokenizer files. Never throws: a LibTorch error anywhere in the run (an
// allocation that fails, a device fault) comes back as INTERNAL "engine: ...".
absl::StatusOr<PruneReport> PruneModel(const PruneOptions& options, const PruneObserver& observer);
// The same with a per-linear method of the caller's (a test's, say) instead of the one
// options.method names.
absl::StatusOr<PruneReport> PruneModelWith(const PruneOptions& options, const PruneObserver& observer,
                                           std::unique_ptr<PruningMethod> method);

}  // namespace shears::engine
