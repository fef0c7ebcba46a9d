#pragma once
// Hugging Face tokenizer.json with a BPE model, computed as the tokenizers library does: the added
// tokens found in the raw text, the normalizer (normalizer.h) and the pre-tokenizer
// (pre_tokenizer.h) over the text between them, BPE merges by rank within each piece, byte
// fallback and the unknown token for what the vocabulary lacks, and the post-processor's special
// tokens around the whole. GPT-2, Llama-3, Qwen2.5/3 (byte-level); Llama-2, Mistral and Gemma
// (Prepend/Replace normalizers with byte fallback).

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/text/added_tokens.h"
#include "worker/engine/text/normalizer.h"
#include "worker/engine/text/pre_tokenizer.h"
#include "worker/engine/text/tokenizer.h"

namespace shears::engine {

class BpeTokenizer final : public Tokenizer {
 public:
  // `path` names the file in error messages.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromJson(const nlohmann::json& json, const std::string& path);

  std::vector<int64_t> Encode(const std::string& text) const override;
  int64_t vocab_size() const override;

 private:
  BpeTokenizer() = default;
  // The word's characters merged by rank, lowest first, until no adjacent pair is in the merges.
  std::vector<std::string_view> MergedSymbols(const std::string& word) const;
  void EncodeWord(const std::string& word, std::vector<int64_t>& out) const;
  // An ordinary stretch of text (no added token in it): normalized, split, merged.
  void EncodeOrdinary(const std::string& text, std::vector<int64_t>& out) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<std::string, int> merge_ranks_;  // "left\0right" -> rank
  AddedTokens added_;
  Normalizer normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;  // a symbol outside the vocabulary becomes its bytes' <0xXX> tokens
  int64_t unk_id_ = -1;         // else the unknown token, when the model has one
  bool fuse_unk_ = false;       // consecutive unknown tokens become one
  std::vector<int64_t> byte_ids_ = std::vector<int64_t>(256, -1);  // <0xXX> tokens
  std::vector<int64_t> prefix_ids_, suffix_ids_;  // from the post-processor's template
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;  // short words only
};

}  // namespace shears::engine
