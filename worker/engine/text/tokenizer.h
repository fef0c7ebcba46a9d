#pragma once
// Text to token ids, as the model's own tokenizer files say: the interface of BPE and
// SentencePiece; tokenizer_factory.h picks one for a model directory.

#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace shears::engine
