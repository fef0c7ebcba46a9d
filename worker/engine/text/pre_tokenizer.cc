#include "worker/engine/text/pre_tokenizer.h"

#include <algorithm>
#include <functional>
#include <utility>

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

absl::StatusOr<pcre2_code*> Compile(const std::string& pattern, const std::string& path) {
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
  return code;
}

// The [begin, end) spans of `regex`'s matches in `text`; an empty match steps over a character.
// PCRE2 would check the UTF-8 of the whole rest of the subject at every match (quadratic in a
// long text): it is checked once here instead.
std::vector<std::pair<size_t, size_t>> RegexMatches(pcre2_code* regex, const std::string& text) {
  const uint32_t options = Utf8Valid(text) ? PCRE2_NO_UTF_CHECK : 0;
  std::vector<std::pair<size_t, size_t>> spans;
  pcre2_match_data* match = pcre2_match_data_create_from_pattern(regex, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t offset = 0;
  while (offset < text.size() && pcre2_match(regex, subject, text.size(), offset, options, match, nullptr) >= 0) {
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
    if (ov[1] > ov[0]) {
      spans.emplace_back(ov[0], ov[1]);
      offset = ov[1];
    } else {
      offset = ov[0] + Utf8Length(static_cast<unsigned char>(text[ov[0]]));
    }
  }
  pcre2_match_data_free(match);
  return spans;
}

std::vector<std::pair<size_t, size_t>> StringMatches(const std::string& needle, const std::string& text) {
  std::vector<std::pair<size_t, size_t>> spans;
  if (needle.empty()) return spans;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) {
    spans.emplace_back(at, at + needle.size());
  }
  return spans;
}

}  // namespace

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

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(const nlohmann::json& json,
                                                                     const std::string& path) {
  std::unique_ptr<PreTokenizer> p(new PreTokenizer());
  std::function<absl::Status(const nlohmann::json&)> add = [&](const nlohmann::json& j) -> absl::Status {
    if (j.is_null()) return absl::OkStatus();
    const std::string type = j.value("type", "");
    if (type == "Sequence") {
      for (const auto& inner : j.at("pretokenizers")) SHEARS_RETURN_IF_ERROR(add(inner));
      return absl::OkStatus();
    }
    Step step;
    if (type == "ByteLevel") {
      step.kind = Step::Kind::kByteLevel;
      step.add_prefix_space = j.value("add_prefix_space", true);
      if (j.value("use_regex", true)) {
        SHEARS_ASSIGN_OR_RETURN(step.regex, Compile(kGpt2Pattern, path));
      }
      p->byte_level_ = true;
    } else if (type == "Split") {
      const std::string behavior = j.value("behavior", "");
      if (behavior == "Isolated") {
        step.behavior = Behavior::kIsolated;
      } else if (behavior == "Removed") {
        step.behavior = Behavior::kRemoved;
      } else if (behavior == "MergedWithPrevious") {
        step.behavior = Behavior::kMergedWithPrevious;
      } else if (behavior == "MergedWithNext") {
        step.behavior = Behavior::kMergedWithNext;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(path, ": Split behavior '", behavior, "' is not supported"));
      }
      if (j.value("invert", false)) return absl::InvalidArgumentError(absl::StrCat(path, ": an inverted Split is not supported"));
      const auto& pattern = j.at("pattern");
      if (pattern.contains("Regex")) {
        step.kind = Step::Kind::kRegex;
        SHEARS_ASSIGN_OR_RETURN(step.regex, Compile(pattern["Regex"].get<std::string>(), path));
      } else {
        step.kind = Step::Kind::kString;
        step.literal = pattern.at("String").get<std::string>();
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(path, ": pre-tokenizer '", type,
                                                     "' is not supported (supported: Split, ByteLevel, Sequence)"));
    }
    p->steps_.push_back(std::move(step));
    return absl::OkStatus();
  };
  try {
    SHEARS_RETURN_IF_ERROR(add(json));
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": pre_tokenizer: ", e.what()));
  }
  return p;
}

PreTokenizer::~PreTokenizer() {
  for (auto& step : steps_) {
    if (step.regex != nullptr) pcre2_code_free(step.regex);
  }
}

std::vector<std::string> PreTokenizer::Apply(const Step& step, const std::string& piece) const {
  std::string text = piece;
  if (step.kind == Step::Kind::kByteLevel && step.add_prefix_space && !text.empty() && text[0] != ' ') {
    text = " " + text;
  }
  std::vector<std::string> out;
  if (step.kind == Step::Kind::kByteLevel && step.regex == nullptr) {
    out.push_back(text);
  } else {
    const auto spans = step.kind == Step::Kind::kString ? StringMatches(step.literal, text) : RegexMatches(step.regex, text);
    size_t at = 0;
    std::string carry;  // MergedWithNext: the match waiting for the text after it
    for (const auto& [begin, end] : spans) {
      std::string gap = carry + text.substr(at, begin - at), match = text.substr(begin, end - begin);
      carry.clear();
      switch (step.behavior) {
        case Behavior::kIsolated:
          out.push_back(gap), out.push_back(match);
          break;
        case Behavior::kRemoved:
          out.push_back(gap);
          break;
        case Behavior::kMergedWithPrevious:
          out.push_back(gap + match);
          break;
        case Behavior::kMergedWithNext:
          out.push_back(gap), carry = match;
          break;
      }
      at = end;
    }
    out.push_back(carry + text.substr(at));
  }
  std::vector<std::string> pieces;
  for (auto& p : out) {
    if (p.empty()) continue;
    if (step.kind == Step::Kind::kByteLevel) {
      std::string mapped;
      for (unsigned char c : p) mapped += ByteToUnicode()[c];
      p = std::move(mapped);
    }
    pieces.push_back(std::move(p));
  }
  return pieces;
}

std::vector<std::string> PreTokenizer::Split(const std::string& text) const {
  std::vector<std::string> pieces = {text};
  for (const auto& step : steps_) {
    std::vector<std::string> next;
    for (const auto& piece : pieces) {
      for (auto& p : Apply(step, piece)) next.push_back(std::move(p));
    }
    pieces.swap(next);
  }
  pieces.erase(std::remove_if(pieces.begin(), pieces.end(), [](const std::string& p) { return p.empty(); }),
               pieces.end());
  return pieces;
}

}  // namespace shears::engine
