#pragma once
// The promise of magnitude pruning, checked on files on disk: in each block linear the target
// count of zeros (within one element, beyond the zeros it had), those being the smallest
// magnitudes with the survivors bit-identical, and every other tensor bit-identical.

#include <string>

#include "worker/engine/prune_options.h"

namespace shears::testing {

void ExpectMagnitudePruned(const std::string& input_dir, const std::string& output_dir, double sparsity);

// Prunes with `options` twice at options.seed and once at the next seed, into dir/a, dir/b and
// dir/c: the first two weights files are byte-identical, the third differs.
void ExpectReproducibleBySeed(engine::PruneOptions options, const std::string& dir);

}  // namespace shears::testing
