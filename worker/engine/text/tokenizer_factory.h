#pragma once
// Picks the tokenizer a model directory's files describe; above the tokenizers it knows.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/text/tokenizer.h"

namespace shears::engine {

// tokenizer.json (byte-level BPE) or tokenizer.model (SentencePiece, Llama-2) in `model_dir`;
// NOT_FOUND when the model has neither.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

}  // namespace shears::engine
