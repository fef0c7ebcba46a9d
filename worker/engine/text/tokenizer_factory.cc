#include "worker/engine/text/tokenizer_factory.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/text/bpe_tokenizer.h"
#include "worker/engine/text/sentencepiece_tokenizer.h"

namespace shears::engine {

namespace {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadBpe(const std::string& path) {
  auto json = ReadJsonObject(path);
  if (!json.ok()) return json.status();
  try {
    auto bpe = BpeTokenizer::FromJson(*json, path);
    if (!bpe.ok()) return bpe.status();
    return std::unique_ptr<Tokenizer>(std::move(*bpe));
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": ", e.what()));
  }
}

// Llama-2 checkpoints: tokenizer.model, with tokenizer_config.json saying whether BOS/EOS are added.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePiece(const std::filesystem::path& dir) {
  bool add_bos = true, add_eos = false;
  const std::string config_path = (dir / "tokenizer_config.json").string();
  if (std::filesystem::exists(config_path)) {
    auto config = ReadJsonObject(config_path);
    if (!config.ok()) return config.status();
    auto flag = [&](const char* key, bool fallback) {
      auto it = config->find(key);
      return it != config->end() && it->is_boolean() ? it->get<bool>() : fallback;
    };
    add_bos = flag("add_bos_token", true);
    add_eos = flag("add_eos_token", false);
  }
  const std::string path = (dir / "tokenizer.model").string();
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  auto spm = SentencePieceTokenizer::FromModelProto(*bytes, path, add_bos, add_eos);
  if (!spm.ok()) return spm.status();
  return std::unique_ptr<Tokenizer>(std::move(*spm));
}

}  // namespace

absl::StatusOr<ChosenTokenizer> ChooseTokenizer(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  const bool has_json = std::filesystem::exists(dir / "tokenizer.json");
  const bool has_model = std::filesystem::exists(dir / "tokenizer.model");
  ChosenTokenizer chosen;
  if (has_json) {
    auto bpe = LoadBpe((dir / "tokenizer.json").string());
    if (bpe.ok() || !has_model || !absl::IsInvalidArgument(bpe.status())) {
      if (!bpe.ok()) return bpe.status();
      chosen.tokenizer = std::move(*bpe);
      chosen.file = "tokenizer.json";
      return chosen;
    }
    chosen.note = absl::StrCat(bpe.status().message(), "; tokenizing with tokenizer.model instead");
  }
  if (has_model) {
    SHEARS_ASSIGN_OR_RETURN(chosen.tokenizer, LoadSentencePiece(dir));
    chosen.file = "tokenizer.model";
    return chosen;
  }
  return absl::NotFoundError(
      absl::StrCat(model_dir, " has no tokenizer.json or tokenizer.model; give pre-tokenized data (.bin, .npy)"));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  SHEARS_ASSIGN_OR_RETURN(ChosenTokenizer chosen, ChooseTokenizer(model_dir));
  return std::move(chosen.tokenizer);
}

}  // namespace shears::engine
