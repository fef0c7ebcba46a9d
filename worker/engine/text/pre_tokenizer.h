#pragma once
// tokenizer.json's "pre_tokenizer": how normalized text is cut into the pieces BPE merges within,
// as Hugging Face's tokenizers library computes it. Built: Split (by a regex or a string, with the
// Isolated, Removed, MergedWithPrevious and MergedWithNext behaviors), ByteLevel (its prefix space,
// GPT-2's regex, the byte-to-character map), and Sequences of them; null is one piece.

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace shears::engine {

class PreTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromJson(const nlohmann::json& json, const std::string& path);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // The pieces of `text`, in order, non-empty, byte-mapped where a ByteLevel step says so.
  std::vector<std::string> Split(const std::string& text) const;
  // Some step maps bytes to GPT-2's characters.
  bool byte_level() const { return byte_level_; }

 private:
  enum class Behavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext };
  struct Step {
    enum class Kind { kRegex, kString, kByteLevel };
    Kind kind;
    pcre2_code* regex = nullptr;  // kRegex, and kByteLevel with use_regex
    std::string literal;          // kString
    Behavior behavior = Behavior::kIsolated;
    bool add_prefix_space = false;  // kByteLevel
  };
  PreTokenizer() = default;
  std::vector<std::string> Apply(const Step& step, const std::string& piece) const;

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

// GPT-2's reversible map from bytes to printable characters: byte-level BPE works on these.
const std::vector<std::string>& ByteToUnicode();

}  // namespace shears::engine
