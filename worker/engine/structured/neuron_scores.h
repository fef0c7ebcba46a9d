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

#include "absl/status/status.h"

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

// How many of a block's `width` neurons to remove so that the kept width is a multiple of
// `multiple` (JobSpec.width_multiple): the multiple nearest to width − removed, at least one
// multiple and at most the largest multiple within the width. `removed` as it is for multiples
// of 0 or 1 and for FFN-less blocks (width 0); a width below the multiple is the caller's to
// refuse (CheckWidthMultiple).
int64_t AlignedRemoval(int64_t width, int64_t removed, int64_t multiple);

// INVALID_ARGUMENT naming width_multiple when some block's FFN is narrower than it.
absl::Status CheckWidthMultiple(const ModelConfig& config, int64_t multiple);

// Per block, the neurons to remove (bool) at `sparsity`: the lowest scores of each block, or of
// all blocks together with global allocation; then each block's count aligned to `multiple`
// (AlignedRemoval), its lowest scores again.
std::vector<torch::Tensor> LowestNeurons(const std::vector<torch::Tensor>& scores, double sparsity,
                                         Allocation allocation, int64_t multiple = 0);

}  // namespace shears::engine
