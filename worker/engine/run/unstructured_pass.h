#pragma once
// Unstructured and N:M pruning, block by block (the SparseGPT/Wanda pattern): each decoder block is
// loaded, its calibration inputs gathered as the blocks pruned before it produce them, pruned by
// the method, written in the stored dtype and checkpointed, then the next block. Only one block's
// weights and the activations are in memory at a time.

#include <memory>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/methods/pruning_method.h"
#include "worker/engine/model/architecture.h"

namespace shears::engine {

// Prunes `model` with `method` into options.output_dir, with the same files, names and dtypes as
// the input (or, for a compressed options.format, those files stored in that layout); resumes
// from a checkpoint in options.checkpoint_dir made from the inputs `fingerprint` names.
absl::StatusOr<PruneReport> PruneBlockByBlock(const PruneOptions& options, const PruneObserver& observer,
                                              const ModelDir& model, const Architecture& arch, torch::Device device,
                                              std::unique_ptr<PruningMethod> method, const std::string& fingerprint);

}  // namespace shears::engine
