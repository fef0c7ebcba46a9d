#pragma once
// Redundancy measures that explain structured pruning's choices, on calibration data: ShortGPT's
// Block Influence of every block, and how alike the neurons of every FFN are (the framework of
// Santacroce et al., "What matters in the structured pruning of generative language models?").

#include <string>

#include <torch/torch.h>

#include "worker/engine/api/report.h"
#include "worker/engine/model/block_runner.h"

namespace shears::engine {

// The values and their mean and quantiles.
NeuronMeasure Summarize(const torch::Tensor& values);

// 1 − mean over tokens of cos(before_t, after_t), hidden states [N, T, d].
double BlockInfluence(const torch::Tensor& before, const torch::Tensor& after);

// The neuron measures of one FFN from its activations A [tokens, neurons] (the down projection's
// inputs), in single precision, without a neurons × neurons matrix; uniqueness is estimated
// against a sample of the neurons when the tokens are fewer than the neurons (redundancy.cc).
FfnRedundancy MeasureFfn(int block, const torch::Tensor& activations);

// Every block's influence for the runner's model on `windows` (token ids [N, T]) and, when
// `neurons`, every FFN's measures on the first 256 tokens (sensitivity on the first windows, up
// to 16, whose stored block inputs stay under 512 MiB).
RedundancyReport MeasureRedundancy(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model,
                                   bool neurons);

// Measures `model` ("dense" or "pruned"): Block Influence, and the FFN measures when `neurons`;
// adds it to the report and streams it.
void RecordRedundancy(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model,
                      bool neurons, const PruneObserver& observer, PruneReport& report);

}  // namespace shears::engine
