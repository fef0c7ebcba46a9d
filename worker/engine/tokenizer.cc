#include "worker/engine/tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "worker/engine/bpe_tokenizer.h"

namespace shears::engine {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "tokenizer.json").string();
  if (!std::filesystem::exists(path)) {
    return absl::NotFoundError(absl::StrCat(model_dir, " has no tokenizer.json; give pre-tokenized data (.bin, .npy)"));
  }
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto json = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return absl::DataLossError(absl::StrCat(path, ": not a JSON object"));
  try {
    auto bpe = BpeTokenizer::FromJson(json, path);
    if (!bpe.ok()) return bpe.status();
    return std::unique_ptr<Tokenizer>(std::move(*bpe));
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": ", e.what()));
  }
}

}  // namespace shears::engine
