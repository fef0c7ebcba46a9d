#pragma once
// The promise of magnitude pruning, checked on files on disk: in each block linear the target
// count of zeros (within one element, beyond the zeros it had), those being the smallest
// magnitudes with the survivors bit-identical, and every other tensor bit-identical.

#include <string>

namespace shears::testing {

void ExpectMagnitudePruned(const std::string& input_dir, const std::string& output_dir, double sparsity);

}  // namespace shears::testing
