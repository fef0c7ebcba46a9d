#include "worker/engine/text/bpe_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <functional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/text/pair_merge.h"
#include "worker/engine/text/utf8.h"

namespace shears::engine {
namespace {

constexpr size_t kCachedWordBytes = 256;

std::string PairKey(const std::string& a, const std::string& b) { return a + '\0' + b; }

absl::Status Unsupported(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what, " is not supported"));
}

// A token id as tokenizer.json writes it: a non-negative integer. (A float out of int64's range
// converted with undefined behaviour: found by fuzz/tokenizer_json_fuzzer.)
absl::StatusOr<int64_t> TokenId(const nlohmann::json& id, const std::string& path) {
  if (!id.is_number_integer() || id.get<int64_t>() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": token id ", id.dump(), " is not a non-negative integer"));
  }
  return id.get<int64_t>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromJson(const nlohmann::json& json,
                                                                     const std::string& path) {
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
  const auto& model = json.value("model", nlohmann::json::object());
  if (model.value("type", "BPE") != "BPE") {
    return Unsupported(path, absl::StrCat("model type '", model.value("type", ""), "'"));
  }
  if (!model.contains("vocab") || !model["vocab"].is_object() || !model.contains("merges")) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the BPE model has no vocab or merges"));
  }
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(affix) && model[affix].is_string() && !model[affix].get<std::string>().empty()) {
      return Unsupported(path, absl::StrCat("a BPE ", affix));
    }
  }
  for (const auto& [token, id] : model["vocab"].items()) {
    SHEARS_ASSIGN_OR_RETURN(t->vocab_[token], TokenId(id, path));
  }
  int rank = 0;
  for (const auto& merge : model["merges"]) {
    // Written as "a b" by older files, as ["a", "b"] by newer ones.
    if (merge.is_string()) {
      const std::string m = merge.get<std::string>();
      const auto space = m.find(' ', 1);
      if (space == std::string::npos) return absl::InvalidArgumentError(absl::StrCat(path, ": bad merge '", m, "'"));
      t->merge_ranks_.emplace(PairKey(m.substr(0, space), m.substr(space + 1)), rank++);
    } else if (merge.is_array() && merge.size() == 2) {
      t->merge_ranks_.emplace(PairKey(merge[0].get<std::string>(), merge[1].get<std::string>()), rank++);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad merge ", merge.dump()));
    }
  }
  t->ignore_merges_ = model.value("ignore_merges", false);
  t->byte_fallback_ = model.value("byte_fallback", false);
  t->fuse_unk_ = model.value("fuse_unk", false);
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto unk = t->vocab_.find(model["unk_token"].get<std::string>());
    if (unk != t->vocab_.end()) t->unk_id_ = unk->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    if (auto it = t->vocab_.find(name); it != t->vocab_.end()) t->byte_ids_[b] = it->second;
  }
  for (const auto& added : json.value("added_tokens", nlohmann::json::array())) {
    // The files in use mark every added token raw (matched before normalizing, not stripped);
    // the others are refused rather than matched wrongly.
    for (const char* flag : {"normalized", "lstrip", "rstrip", "single_word"}) {
      if (added.value(flag, false)) {
        return Unsupported(path, absl::StrCat("an added token with ", flag, " (", added.value("content", ""), ")"));
      }
    }
    SHEARS_ASSIGN_OR_RETURN(const int64_t id, TokenId(added.at("id"), path));
    t->added_.Add(added.at("content").get<std::string>(), id);
    t->vocab_.emplace(added.at("content").get<std::string>(), id);
  }
  SHEARS_ASSIGN_OR_RETURN(t->normalizer_, Normalizer::FromJson(json.value("normalizer", nlohmann::json()), path));
  SHEARS_ASSIGN_OR_RETURN(t->pre_tokenizer_, PreTokenizer::FromJson(json.value("pre_tokenizer", nlohmann::json()), path));
  if (!t->pre_tokenizer_->byte_level() && !t->byte_fallback_ && t->unk_id_ < 0) {
    // Neither bytes nor a fallback: text outside the vocabulary would vanish.
    return Unsupported(path, "a BPE model that is neither byte-level nor has byte_fallback or an unk_token");
  }

  // Post-processors: ByteLevel adds nothing; a template adds special tokens around the text.
  std::function<absl::Status(const nlohmann::json&)> post = [&](const nlohmann::json& p) -> absl::Status {
    if (p.is_null()) return absl::OkStatus();
    const std::string type = p.value("type", "");
    if (type == "Sequence") {
      for (const auto& inner : p.at("processors")) SHEARS_RETURN_IF_ERROR(post(inner));
    } else if (type == "TemplateProcessing") {
      bool after = false;
      for (const auto& piece : p.at("single")) {
        if (piece.contains("Sequence")) {
          after = true;
        } else if (piece.contains("SpecialToken")) {
          const std::string name = piece["SpecialToken"].at("id").get<std::string>();
          for (const auto& id : p.at("special_tokens").at(name).at("ids")) {
            SHEARS_ASSIGN_OR_RETURN(const int64_t value, TokenId(id, path));
            (after ? t->suffix_ids_ : t->prefix_ids_).push_back(value);
          }
        }
      }
    } else if (type != "ByteLevel") {
      return Unsupported(path, absl::StrCat("post-processor '", type, "'"));
    }
    return absl::OkStatus();
  };
  SHEARS_RETURN_IF_ERROR(post(json.value("post_processor", nlohmann::json())));
  return t;
}

std::vector<std::string_view> BpeTokenizer::MergedSymbols(const std::string& word) const {
  std::string key;  // "left\0right", reused: a long word makes many candidates
  return MergePairs(word, [&](std::string_view left, std::string_view right) -> std::optional<double> {
    key.assign(left);
    key.push_back('\0');
    key.append(right);
    auto it = merge_ranks_.find(key);
    if (it == merge_ranks_.end()) return std::nullopt;
    return -static_cast<double>(it->second);  // the lowest rank first
  });
}

void BpeTokenizer::EncodeWord(const std::string& word, std::vector<int64_t>& out) const {
  auto cached = cache_.find(word);
  if (cached != cache_.end()) {
    out.insert(out.end(), cached->second.begin(), cached->second.end());
    return;
  }
  std::vector<int64_t> ids;
  auto whole = vocab_.find(word);
  if (ignore_merges_ && whole != vocab_.end()) {
    ids.push_back(whole->second);
  } else {
    for (const auto& symbol : MergedSymbols(word)) {
      if (auto it = vocab_.find(std::string(symbol)); it != vocab_.end()) {
        ids.push_back(it->second);
        continue;
      }
      const bool bytes = byte_fallback_ && std::all_of(symbol.begin(), symbol.end(), [&](char c) {
        return byte_ids_[static_cast<unsigned char>(c)] >= 0;
      });
      if (bytes) {
        for (unsigned char c : symbol) ids.push_back(byte_ids_[c]);
      } else if (unk_id_ >= 0 && !(fuse_unk_ && !ids.empty() && ids.back() == unk_id_)) {
        ids.push_back(unk_id_);
      }
    }
  }
  out.insert(out.end(), ids.begin(), ids.end());
  if (word.size() <= kCachedWordBytes) cache_.emplace(word, std::move(ids));
}

void BpeTokenizer::EncodeOrdinary(const std::string& text, std::vector<int64_t>& out) const {
  for (const auto& piece : pre_tokenizer_->Split(normalizer_.Normalize(text))) EncodeWord(piece, out);
}

int64_t BpeTokenizer::vocab_size() const {
  int64_t largest = -1;
  for (const auto& [token, id] : vocab_) largest = std::max(largest, id);
  return largest + 1;
}

std::vector<int64_t> BpeTokenizer::Encode(const std::string& text) const {
  std::vector<int64_t> out(prefix_ids_);
  for (const auto& piece : added_.Split(text)) {
    if (piece.id >= 0) {
      out.push_back(piece.id);
    } else {
      EncodeOrdinary(piece.text, out);
    }
  }
  out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
  return out;
}

}  // namespace shears::engine
