#pragma once
// Text to token ids, as the model's own tokenizer files say.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace shears::engine {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // The ids of `text`, with whatever special tokens the tokenizer's own post-processor adds
  // (Llama-3's BOS, say) and nothing else.
  virtual std::vector<int64_t> Encode(const std::string& text) const = 0;
  // One more than the largest id it can produce.
  virtual int64_t vocab_size() const = 0;
};

// tokenizer.json (byte-level BPE) in `model_dir`; NOT_FOUND when the model has no tokenizer.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

}  // namespace shears::engine
