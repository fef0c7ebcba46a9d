#pragma once
// A whole pruning run: read the model, prune block by block, write the pruned model.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/prune_options.h"

namespace shears::engine {

class PruningMethod;

// Writes into options.output_dir the pruned weights (same file layout, names and dtypes as the
// input), config.json, the index of a sharded model and the tokenizer files. Only one decoder
// block's weights are in memory at a time.
absl::StatusOr<PruneReport> PruneModel(const PruneOptions& options, const PruneObserver& observer);
// The same with a method of the caller's (a test's, say) instead of the one options.method names.
absl::StatusOr<PruneReport> PruneModelWith(const PruneOptions& options, const PruneObserver& observer,
                                           std::unique_ptr<PruningMethod> method);

// A directory beside the output for intermediate models (".NAME.what"); kept while a run may resume.
std::string StagingDir(const PruneOptions& options, const std::string& what);

}  // namespace shears::engine
