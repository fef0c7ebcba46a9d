#pragma once
// Redundancy measures that explain structured pruning's choices, on calibration data: ShortGPT's
// Block Influence of every block, and how alike the neurons of every FFN are (the framework of
// Santacroce et al., "What matters in the structured pruning of generative language models?").

#include <algorithm>
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "worker/engine/api/report.h"
#include "worker/engine/model/block_runner.h"

namespace shears::engine {

// The values and their mean and quantiles.
NeuronMeasure Summarize(const torch::Tensor& values);

// 1 − mean over tokens of cos(before_t, after_t), hidden states [N, T, d].
double BlockInfluence(const torch::Tensor& before, const torch::Tensor& after);

// The same gathered a batch of windows at a time.
class InfluenceMeter {
 public:
  void Add(const torch::Tensor& before, const torch::Tensor& after);
  double value() const { return 1.0 - cosines_ / static_cast<double>(std::max<int64_t>(1, tokens_)); }

 private:
  double cosines_ = 0.0;
  int64_t tokens_ = 0;
};

// Runs block `b` (its tensors `block`) on `hidden` into `next`, measuring the block's influence
// and, where the family's block splits into sublayers, each sublayer's.
BlockRedundancy RunMeasured(const BlockRunner& runner, int b, const TensorMap& block, const torch::Tensor& hidden,
                            torch::Tensor& next, const LinearInputs* observe = nullptr);

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
