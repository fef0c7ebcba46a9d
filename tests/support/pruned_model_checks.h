#pragma once
// The promise of magnitude pruning, checked on files on disk: in each block linear the target
// count of zeros (within one element, beyond the zeros it had), those being the smallest
// magnitudes with the survivors bit-identical, and every other tensor bit-identical.

#include <string>
#include <vector>

#include <torch/torch.h>

#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"

namespace shears::testing {

void ExpectMagnitudePruned(const std::string& input_dir, const std::string& output_dir, double sparsity);

// Prunes with `options` twice at options.seed and once at the next seed, into dir/a, dir/b and
// dir/c: the first two weights files are byte-identical, the third differs.
void ExpectReproducibleBySeed(engine::PruneOptions options, const std::string& dir);

// Tensor `name` as stored in the model directory `dir` (a test failure when absent).
torch::Tensor StoredTensor(const std::string& dir, const std::string& name);

// Each block's FFN width as the engine reads the config.json in `dir` (any layout: one
// intermediate_size, Nemotron-NAS block_configs, shears_intermediate_sizes).
std::vector<int64_t> WrittenFfnWidths(const std::string& dir);

// Perplexity of the model in `dir`, read back from its files, on the KJV test split in windows of
// 64 tokens (the first 4096), as the structured-pruning tests ask their jobs to evaluate.
double TestSplitPerplexity(const std::string& dir);

}  // namespace shears::testing
