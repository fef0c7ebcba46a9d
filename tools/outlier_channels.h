#pragma once
// Outlier features, the property of large LLMs that activation-aware pruning exploits (a few hidden
// channels with activations far larger than the rest), put into a small llama model without
// changing what it computes: scaling channel c of each RMSNorm weight by s and column c of the
// linears that read that norm by 1/s leaves every logit the same (up to rounding), while the
// channel's activations grow s-fold and its weights shrink s-fold.

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace shears::tools {

absl::Status WriteWithOutlierChannels(const std::string& llama_dir, const std::string& out_dir,
                                      const std::vector<int64_t>& channels, double scale);

}  // namespace shears::tools
