#include "worker/engine/text/bpe_tokenizer.h"

#include <algorithm>
#include <climits>
#include <queue>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/text/utf8.h"

namespace shears::engine {
namespace {

// GPT-2's split pattern, which a ByteLevel pre-tokenizer with use_regex applies.
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string Utf8(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// GPT-2's reversible map from bytes to printable characters: byte-level BPE works on these.
const std::vector<std::string>& ByteToUnicode() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = Utf8(printable ? b : next++);
    }
    return t;
  }();
  return table;
}

std::string PairKey(const std::string& a, const std::string& b) { return a + '\0' + b; }

absl::Status Unsupported(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what, " is not supported"));
}

}  // namespace

BpeTokenizer::~BpeTokenizer() {
  for (auto* code : splits_) pcre2_code_free(code);
}

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
  for (const auto& [token, id] : model["vocab"].items()) t->vocab_[token] = id.get<int64_t>();
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
  if (json.contains("added_tokens")) {
    for (const auto& added : json["added_tokens"]) {
      t->added_.emplace_back(added.at("content").get<std::string>(), added.at("id").get<int64_t>());
      t->vocab_.emplace(t->added_.back().first, t->added_.back().second);
    }
  }
  std::sort(t->added_.begin(), t->added_.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });

  // Pre-tokenizers: ByteLevel (with or without its own regex), Split with a regex, or a Sequence.
  bool byte_level = false;
  std::vector<std::string> patterns;
  std::function<absl::Status(const nlohmann::json&)> add = [&](const nlohmann::json& p) -> absl::Status {
    if (p.is_null()) return absl::OkStatus();
    const std::string type = p.value("type", "");
    if (type == "Sequence") {
      for (const auto& inner : p.at("pretokenizers")) SHEARS_RETURN_IF_ERROR(add(inner));
    } else if (type == "ByteLevel") {
      byte_level = true;
      t->add_prefix_space_ = p.value("add_prefix_space", false);
      if (p.value("use_regex", true)) patterns.push_back(kGpt2Pattern);
    } else if (type == "Split") {
      if (p.value("behavior", "") != "Isolated" || p.value("invert", false)) {
        return Unsupported(path, "a Split pre-tokenizer other than Isolated");
      }
      const auto& pattern = p.at("pattern");
      if (!pattern.contains("Regex")) return Unsupported(path, "a Split pre-tokenizer without a Regex");
      patterns.push_back(pattern["Regex"].get<std::string>());
    } else {
      return Unsupported(path, absl::StrCat("pre-tokenizer '", type, "'"));
    }
    return absl::OkStatus();
  };
  SHEARS_RETURN_IF_ERROR(add(json.value("pre_tokenizer", nlohmann::json())));
  if (!byte_level) return Unsupported(path, "a BPE model without a ByteLevel pre-tokenizer");
  for (const auto& pattern : patterns) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      return absl::InvalidArgumentError(absl::StrCat(path, ": pre-tokenizer regex does not compile at ", offset, ": ",
                                                     reinterpret_cast<char*>(message)));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // faster when available; correct either way
    t->splits_.push_back(code);
  }

  const auto& normalizer = json.value("normalizer", nlohmann::json());
  // NFC leaves ASCII and already-composed text (what corpora hold) unchanged.
  if (!normalizer.is_null() && normalizer.value("type", "") != "NFC") {
    return Unsupported(path, absl::StrCat("normalizer '", normalizer.value("type", ""), "'"));
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
            (after ? t->suffix_ids_ : t->prefix_ids_).push_back(id.get<int64_t>());
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

std::vector<std::string> BpeTokenizer::PreTokenize(const std::string& text) const {
  std::vector<std::string> pieces = {text};
  for (pcre2_code* code : splits_) {
    std::vector<std::string> next;
    pcre2_match_data* match = pcre2_match_data_create_from_pattern(code, nullptr);
    for (const auto& piece : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t offset = 0;
      // PCRE2 checks the whole subject's UTF-8 on every call unless told not to: once is enough.
      uint32_t flags = 0;
      while (offset < piece.size()) {
        if (pcre2_match(code, subject, piece.size(), offset, flags, match, nullptr) < 0) break;
        flags = PCRE2_NO_UTF_CHECK;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
        if (ov[0] > offset) next.push_back(piece.substr(offset, ov[0] - offset));
        if (ov[1] > ov[0]) {
          next.push_back(piece.substr(ov[0], ov[1] - ov[0]));
          offset = ov[1];
        } else {  // an empty match: step over one character
          offset = ov[0] + Utf8Length(static_cast<unsigned char>(piece[ov[0]]));
          if (ov[0] > offset) next.push_back(piece.substr(ov[0], offset - ov[0]));
        }
      }
      if (offset < piece.size()) next.push_back(piece.substr(offset));
    }
    pcre2_match_data_free(match);
    pieces.swap(next);
  }
  return pieces;
}

std::vector<std::string> BpeTokenizer::MergedSymbols(const std::string& word) const {
  // The characters as a linked list; the candidate merges of adjacent symbols in a heap by
  // (rank, position), so the lowest-ranked pair goes first and, among equals, the leftmost, as a
  // scan of the whole word would choose, in O(n log n) instead of O(n²).
  struct Symbol {
    int prev, next;
    size_t begin, length;  // in `word`; length 0 once merged into its left neighbour
  };
  std::vector<Symbol> symbols;
  for (size_t i = 0; i < word.size();) {
    const size_t n = std::min(Utf8Length(static_cast<unsigned char>(word[i])), word.size() - i);
    symbols.push_back({static_cast<int>(symbols.size()) - 1, static_cast<int>(symbols.size()) + 1, i, n});
    i += n;
  }
  if (!symbols.empty()) symbols.back().next = -1;
  struct Candidate {
    int rank, left, right;
    size_t length;  // of the joined pair, to notice one made stale by another merge
  };
  auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> agenda(later);
  auto piece = [&](int i) { return word.substr(symbols[i].begin, symbols[i].length); };
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    auto it = merge_ranks_.find(PairKey(piece(left), piece(right)));
    if (it != merge_ranks_.end()) {
      agenda.push({it->second, left, right, symbols[left].length + symbols[right].length});
    }
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) consider(static_cast<int>(i), static_cast<int>(i) + 1);
  while (!agenda.empty()) {
    const Candidate top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.length == 0 || right.length == 0 || left.next != top.right || left.length + right.length != top.length) {
      continue;
    }
    left.length += right.length;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    right.length = 0;
    consider(left.prev, top.left);
    consider(top.left, left.next);
  }
  std::vector<std::string> out;
  for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) out.push_back(piece(i));
  return out;
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
    const std::vector<std::string> symbols = MergedSymbols(word);
    for (const auto& s : symbols) {
      auto it = vocab_.find(s);
      // Every single byte is in a byte-level vocabulary; a file without one is caught here.
      if (it != vocab_.end()) ids.push_back(it->second);
    }
  }
  out.insert(out.end(), ids.begin(), ids.end());
  cache_.emplace(word, std::move(ids));
}

void BpeTokenizer::EncodeOrdinary(const std::string& text, std::vector<int64_t>& out) const {
  const auto& bytes = ByteToUnicode();
  for (const auto& piece : PreTokenize(text)) {
    std::string mapped;
    for (unsigned char c : piece) mapped += bytes[c];
    EncodeWord(mapped, out);
  }
}

int64_t BpeTokenizer::vocab_size() const {
  int64_t largest = -1;
  for (const auto& [token, id] : vocab_) largest = std::max(largest, id);
  return largest + 1;
}

std::vector<int64_t> BpeTokenizer::Encode(const std::string& text) const {
  std::vector<int64_t> out(prefix_ids_);
  const std::string input = add_prefix_space_ && !text.empty() && text[0] != ' ' ? " " + text : text;
  // Added tokens in the text stand for themselves; the text between them is encoded as usual.
  size_t start = 0, i = 0;
  while (i < input.size()) {
    bool matched = false;
    for (const auto& [content, id] : added_) {
      if (!content.empty() && input.compare(i, content.size(), content) == 0) {
        if (i > start) EncodeOrdinary(input.substr(start, i - start), out);
        out.push_back(id);
        i += content.size();
        start = i;
        matched = true;
        break;
      }
    }
    if (!matched) ++i;
  }
  if (start < input.size()) EncodeOrdinary(input.substr(start), out);
  out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
  return out;
}

}  // namespace shears::engine
