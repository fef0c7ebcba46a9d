#pragma once
// How FFN neurons are ranked and chosen, shared by one-shot FFN pruning (ffn_neurons.h), pruning
// while fine-tuning (neuron_fine_tune.h) and the predictor search's neuron shares: a neuron is a
// row of the up (and gate) projection, the matching column of the down projection and its bias
// entries.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "worker/engine/api/options.h"
#include "worker/engine/model/architecture.h"

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

}  // namespace shears::engine
