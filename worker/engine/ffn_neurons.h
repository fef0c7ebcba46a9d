#pragma once
// FFN-neuron pruning: a neuron is a row of the up (and gate) projection and the matching column of
// the down projection, with its bias entries; removing it makes the matrices physically smaller.
// Without fine-tuning the neurons are scored once, by magnitude (the L2 norm of all of the
// neuron's weights) or at random (seeded); with fine-tuning see neuron_fine_tune.h. The target
// share of neurons goes from every block alike (uniform) or where the scores are lowest across
// all blocks (global), which leaves blocks of different widths: config.json then lists them in
// `shears_intermediate_sizes`, which the engine reads back.

#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/architecture.h"
#include "worker/engine/model_dir.h"
#include "worker/engine/prune_options.h"

namespace shears::engine {

// For each tensor of a block's MLP, the dimension that runs over its neurons.
using NeuronAxes = std::map<std::string, int>;
NeuronAxes NeuronAxesOf(const Architecture& arch);

// The norm of every weight and bias entry each neuron of `block` owns.
torch::Tensor MagnitudeScores(const TensorMap& block, const NeuronAxes& axes);
// Seeded uniform scores for the neurons of block `index`.
torch::Tensor RandomScores(uint64_t seed, int index, int64_t width);

// Per block, the neurons to remove (bool) at `sparsity`: the lowest scores of each block, or of
// all blocks together with global allocation.
std::vector<torch::Tensor> LowestNeurons(const std::vector<torch::Tensor>& scores, double sparsity,
                                         Allocation allocation);

absl::StatusOr<PruneReport> PruneFfnNeurons(const PruneOptions& options, const PruneObserver& observer,
                                            const ModelDir& model, const Architecture& arch, torch::Device device);

}  // namespace shears::engine
