#pragma once
// tokenizer.json's "normalizer": what text becomes before it is split, as Hugging Face's
// tokenizers library computes it. Built: NFC, Prepend, Replace (of a string), and Sequences of
// them; anything else is refused naming it.

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace shears::engine {

class Normalizer {
 public:
  // null (no normalizer) is the identity. `path` names the file in errors.
  static absl::StatusOr<Normalizer> FromJson(const nlohmann::json& json, const std::string& path);

  std::string Normalize(const std::string& text) const;

 private:
  struct Step {
    enum class Kind { kNfc, kPrepend, kReplace };
    Kind kind;
    std::string what, with;  // Prepend: what; Replace: what -> with
  };
  std::vector<Step> steps_;
};

}  // namespace shears::engine
