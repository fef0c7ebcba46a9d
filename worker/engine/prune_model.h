#pragma once
// A whole pruning run: read the model, prune block by block, write the pruned model.

#include "absl/status/statusor.h"
#include "worker/engine/prune_options.h"

namespace shears::engine {

// Writes into options.output_dir the pruned weights (same file layout, names and dtypes as the
// input), config.json, the index of a sharded model and the tokenizer files. Only one decoder
// block's weights are in memory at a time.
absl::StatusOr<PruneReport> PruneModel(const PruneOptions& options, const PruneObserver& observer);

}  // namespace shears::engine
