#pragma once
// One pruning pass: one method over the model of options.model_dir into options.output_dir. The
// front door (prune_model.h) runs one; the predictor search runs one for each configuration it
// keeps.

#include <memory>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/methods/pruning_method.h"

namespace shears::engine {

// Opens and checks the model (a compressed one is decompressed into a staging directory first),
// then hands it to the driver of options.structure: the block-by-block loop with `method` (made
// from options.method when null) for unstructured and N:M targets, or the structured method that
// rewrites the model. Expects options that passed CheckJobRules.
absl::StatusOr<PruneReport> RunPruningPass(const PruneOptions& options, const PruneObserver& observer,
                                           std::unique_ptr<PruningMethod> method = nullptr);

}  // namespace shears::engine
