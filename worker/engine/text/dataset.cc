#include "worker/engine/text/dataset.h"

#include <cstring>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/text/utf8.h"

namespace shears::engine {
namespace {

template <typename T>
torch::Tensor FromLittleEndian(const char* data, size_t count) {
  std::vector<T> values(count);
  // x86 and ARM are little-endian. An empty file has no bytes to copy (and memcpy no null pointer).
  if (count > 0) std::memcpy(values.data(), data, count * sizeof(T));
  auto out = torch::empty({static_cast<int64_t>(count)}, torch::kInt64);
  auto* p = out.data_ptr<int64_t>();
  for (size_t i = 0; i < count; ++i) p[i] = static_cast<int64_t>(values[i]);
  return out;
}

absl::StatusOr<torch::Tensor> RawIds(const std::string& path, const std::string& bytes, size_t width) {
  if (bytes.size() % width != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", bytes.size(), " bytes is not a whole number of uint",
                                                   8 * width, " ids"));
  }
  return width == 2 ? FromLittleEndian<uint16_t>(bytes.data(), bytes.size() / 2)
                    : FromLittleEndian<uint32_t>(bytes.data(), bytes.size() / 4);
}

// NumPy's format: magic, version, a little header dict, then the raw array.
absl::StatusOr<torch::Tensor> NpyIds(const std::string& path, const std::string& bytes) {
  auto bad = [&](const std::string& what) { return absl::InvalidArgumentError(absl::StrCat(path, ": ", what)); };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) return bad("not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    start = 10;
  } else {
    if (bytes.size() < 12) return bad("truncated .npy header");
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[8 + i]);
    start = 12;
  }
  if (start + header_len > bytes.size()) return bad("truncated .npy header");
  const std::string header = bytes.substr(start, header_len);
  const std::string data = bytes.substr(start + header_len);
  auto field = [&](const std::string& key) -> std::string {
    auto at = header.find("'" + key + "'");
    if (at == std::string::npos) return "";
    auto colon = header.find(':', at);
    return std::string(absl::StripAsciiWhitespace(header.substr(colon + 1)));
  };
  const std::string descr = field("descr");
  if (absl::StartsWith(field("fortran_order"), "True")) return bad("Fortran-ordered arrays are not supported");
  struct Kind {
    const char* descr;
    size_t width;
  };
  for (const Kind& k : {Kind{"'<u2'", 2}, Kind{"'<u4'", 4}, Kind{"'<i4'", 4}, Kind{"'<i8'", 8}, Kind{"'<u8'", 8},
                        Kind{"'|u1'", 1}}) {
    if (!absl::StartsWith(descr, k.descr)) continue;
    if (data.size() % k.width != 0) return bad("array data is not a whole number of elements");
    const size_t n = data.size() / k.width;
    switch (k.width) {
      case 1: return FromLittleEndian<uint8_t>(data.data(), n);
      case 2: return FromLittleEndian<uint16_t>(data.data(), n);
      case 4: return descr[2] == 'u' ? FromLittleEndian<uint32_t>(data.data(), n) : FromLittleEndian<int32_t>(data.data(), n);
      default: return FromLittleEndian<int64_t>(data.data(), n);
    }
  }
  return bad(absl::StrCat("dtype ", descr, " is not an integer type for token ids"));
}

absl::StatusOr<std::string> JsonLinesText(const std::string& path, const std::string& bytes) {
  std::string text;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(bytes, '\n')) {
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded() || !record.is_object() || !record.contains("text") || !record["text"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": line ", line_number, " is not a JSON object with a string \"text\" field"));
    }
    if (!text.empty()) text += "\n\n";
    text += record["text"].get<std::string>();
  }
  return text;
}

}  // namespace

absl::StatusOr<torch::Tensor> LoadTokenIds(const std::string& path, const Tokenizer* tokenizer, int64_t vocab) {
  SHEARS_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  if (bytes.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": the dataset is empty"));
  torch::Tensor ids;
  if (absl::EndsWith(path, ".npy")) {
    SHEARS_ASSIGN_OR_RETURN(ids, NpyIds(path, bytes));
  } else if (absl::EndsWith(path, ".u32.bin") || absl::EndsWith(path, ".uint32.bin")) {
    SHEARS_ASSIGN_OR_RETURN(ids, RawIds(path, bytes, 4));
  } else if (absl::EndsWith(path, ".bin")) {
    SHEARS_ASSIGN_OR_RETURN(ids, RawIds(path, bytes, 2));
  } else {
    std::string text = std::move(bytes);
    if (absl::EndsWith(path, ".jsonl")) {
      SHEARS_ASSIGN_OR_RETURN(text, JsonLinesText(path, text));
    }
    if (tokenizer == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": text needs the model's tokenizer, and the model has none; give token ids (.bin, .npy)"));
    }
    if (const size_t bad = FirstInvalidUtf8(text); bad != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": text is not valid UTF-8 at byte ", bad));
    }
    std::vector<int64_t> encoded = tokenizer->Encode(text);
    ids = torch::tensor(encoded, torch::kInt64);
  }
  if (ids.numel() == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": the dataset holds no tokens"));
  auto out_of_range = (ids < 0).logical_or(ids >= vocab).nonzero();
  if (out_of_range.size(0) > 0) {
    const int64_t at = out_of_range[0][0].item<int64_t>();
    return absl::InvalidArgumentError(absl::StrCat(path, ": id ", ids[at].item<int64_t>(), " at position ", at,
                                                   " is outside the vocabulary of ", vocab));
  }
  return ids;
}

absl::StatusOr<torch::Tensor> CalibrationWindows(const torch::Tensor& ids, int64_t num_samples, int64_t seq_len,
                                                 uint64_t seed) {
  if (num_samples < 1 || seq_len < 2) {
    return absl::InvalidArgumentError("calibration needs num_samples >= 1 and seq_len >= 2");
  }
  const int64_t n = ids.numel();
  // Windows may overlap, as in SparseGPT's sampling, but the data must hold as many tokens as
  // were asked for: a small file would otherwise give the same few tokens many times over.
  if (n < num_samples * seq_len || n <= seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("calibration data has ", n, " tokens, fewer than the ",
                                                   num_samples, " windows of ", seq_len, " tokens asked for (",
                                                   num_samples * seq_len, ")"));
  }
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> start(0, n - seq_len - 1);
  std::vector<torch::Tensor> windows;
  for (int64_t i = 0; i < num_samples; ++i) windows.push_back(ids.slice(0, start(rng)).slice(0, 0, seq_len));
  return torch::stack(windows);
}

absl::StatusOr<torch::Tensor> EvaluationWindows(const torch::Tensor& ids, int64_t seq_len, int64_t token_budget) {
  if (seq_len < 2) return absl::InvalidArgumentError("evaluation needs seq_len >= 2");
  int64_t n = ids.numel();
  if (token_budget > 0) n = std::min(n, token_budget);
  const int64_t windows = n / seq_len;
  if (windows == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("evaluation data has ", n, " tokens, fewer than one window of ", seq_len));
  }
  return ids.slice(0, 0, windows * seq_len).view({windows, seq_len}).clone();
}

}  // namespace shears::engine
