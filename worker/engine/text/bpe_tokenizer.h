#pragma once
// Hugging Face tokenizer.json with a byte-level BPE model: GPT-2, Llama-3, Qwen2, and the files
// ../shared/reference/bpe.py writes.

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/text/tokenizer.h"

namespace shears::engine {

class BpeTokenizer final : public Tokenizer {
 public:
  // `path` names the file in error messages.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromJson(const nlohmann::json& json, const std::string& path);
  ~BpeTokenizer() override;

  std::vector<int64_t> Encode(const std::string& text) const override;
  int64_t vocab_size() const override;

 private:
  BpeTokenizer() = default;
  // Splits `text` by each pre-tokenizer regex in turn, keeping matches and the text between them.
  std::vector<std::string> PreTokenize(const std::string& text) const;
  // The word's characters merged by rank, lowest first, until no adjacent pair is in the merges.
  std::vector<std::string> MergedSymbols(const std::string& word) const;
  void EncodeWord(const std::string& word, std::vector<int64_t>& out) const;
  void EncodeOrdinary(const std::string& text, std::vector<int64_t>& out) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<std::string, int> merge_ranks_;  // "left\0right" -> rank
  std::vector<std::pair<std::string, int64_t>> added_;  // longest first
  std::vector<pcre2_code*> splits_;
  bool add_prefix_space_ = false;
  bool ignore_merges_ = false;
  std::vector<int64_t> prefix_ids_, suffix_ids_;  // from the post-processor's template
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

}  // namespace shears::engine
