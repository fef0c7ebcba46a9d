#pragma once
// Picks the tokenizer a model directory's files describe; above the tokenizers it knows.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/text/tokenizer.h"

namespace shears::engine {

// The tokenizer of a model directory and which file it came from.
struct ChosenTokenizer {
  std::unique_ptr<Tokenizer> tokenizer;
  std::string file;  // "tokenizer.json" or "tokenizer.model"
  // Set when tokenizer.json uses something not built and tokenizer.model serves instead: why.
  std::string note;
};

// tokenizer.json (BPE) in `model_dir`, or tokenizer.model (SentencePiece BPE) when there is no
// tokenizer.json or it uses something not built; NOT_FOUND when the model has neither, and the
// tokenizer.json's error when it cannot be used and there is no tokenizer.model.
absl::StatusOr<ChosenTokenizer> ChooseTokenizer(const std::string& model_dir);
// The tokenizer alone.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

}  // namespace shears::engine
