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

// The neuron measures of one FFN from the Gram matrix AᵀA of its activations A [tokens, neurons].
FfnRedundancy MeasureFfn(int block, const torch::Tensor& gram);

// Every block's influence and every FFN's measures (sensitivity on the first 16 windows) for the runner's model on `windows` (token
// ids [N, T]).
RedundancyReport MeasureRedundancy(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model);

// Measures `model` ("dense" or "pruned"), adds it to the report and streams it.
void RecordRedundancy(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model,
                      const PruneObserver& observer, PruneReport& report);

}  // namespace shears::engine
