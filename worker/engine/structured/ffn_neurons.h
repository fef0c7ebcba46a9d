#pragma once
// FFN-neuron pruning: a neuron is a row of the up (and gate) projection and the matching column of
// the down projection, with its bias entries; removing it makes the matrices physically smaller.
// Without fine-tuning the neurons are scored once, by magnitude (the L2 norm of all of the
// neuron's weights) or at random (seeded); with fine-tuning see neuron_fine_tune.h. The target
// share of neurons goes from every block alike (uniform) or where the scores are lowest across
// all blocks (global), which leaves blocks of different widths: written in the Nemotron-NAS
// layout for the Llama family (io/nemotron_nas.h), which vLLM serves and the engine reads back.

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture.h"

namespace shears::engine {

absl::StatusOr<PruneReport> PruneFfnNeurons(const PruneOptions& options, const PruneObserver& observer,
                                            const ModelDir& model, const Architecture& arch, torch::Device device);

}  // namespace shears::engine
