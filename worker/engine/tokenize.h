#pragma once
// The ids the engine gives a text: what `shears-worker tokenize` prints, so that a user can check
// them against their own stack before they prune on text.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace shears::engine {

struct Tokenized {
  std::string file;  // the tokenizer file read: tokenizer.json or tokenizer.model
  std::string note;  // why not tokenizer.json, when it was skipped
  std::vector<int64_t> ids;
};

// `text` encoded with the tokenizer of `model_dir`, special tokens included, as a dataset is.
absl::StatusOr<Tokenized> Tokenize(const std::string& model_dir, const std::string& text);

}  // namespace shears::engine
