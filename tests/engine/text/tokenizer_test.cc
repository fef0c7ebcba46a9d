// The tokenizers: agreement with the reference instruments on the KJV test split, and clear
// errors for the files they cannot encode exactly.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/files.h"
#include "tests/support/process.h"
#include "tests/support/test_util.h"
#include "worker/engine/text/bpe_tokenizer.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace shears::engine {
namespace {

using shears::testing::DataDir;
using shears::testing::RunCommand;
using shears::testing::TempDir;

const std::string& KjvDir() { return shears::testing::KjvSplitsDir(); }

std::vector<int64_t> ReferenceIds(const std::string& tokenizer, const std::string& text_file, const TempDir& dir,
                                  const std::string& script = "encode.py") {
  auto run = RunCommand({"/usr/bin/python3", std::string(SHEARS_SOURCE_DIR) + "/tests/reference/" + script, tokenizer,
                         text_file, dir / "ref.ids"},
                        dir / "ref.log");
  EXPECT_EQ(run.status, 0) << run.out;
  std::string raw = ReadFile(dir / "ref.ids").value_or("");
  std::vector<int64_t> ids(raw.size() / 8);
  std::memcpy(ids.data(), raw.data(), raw.size());
  return ids;
}

TEST(BpeTokenizer, EncodesTheKjvTestSplitExactlyAsTheReference) {
  TempDir dir;
  const std::string text_file = KjvDir() + "/test.txt";
  auto tokenizer = LoadTokenizer(DataDir("tiny-llama"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::vector<int64_t> ours = (*tokenizer)->Encode(ReadFile(text_file).value());
  std::vector<int64_t> reference = ReferenceIds(DataDir("tiny-llama/tokenizer.json"), text_file, dir);
  ASSERT_GT(reference.size(), 50000u);
  ASSERT_EQ(ours.size(), reference.size());
  for (size_t i = 0; i < ours.size(); ++i) ASSERT_EQ(ours[i], reference[i]) << "first difference at id " << i;
}

// A Llama-3-style file: a Split pre-tokenizer with its own regex, merges as pairs, and a template
// that adds BOS. Small enough to work out by hand.
TEST(BpeTokenizer, SplitRegexPairMergesAndTemplate) {
  const auto json = nlohmann::json::parse(R"({
    "added_tokens": [{"id": 100, "content": "<|begin_of_text|>", "special": true},
                     {"id": 101, "content": "<|eot|>", "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": " ?\\p{L}+|\\s+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
    "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [100], "tokens": ["<|begin_of_text|>"]}}},
    "model": {"type": "BPE",
        "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "w": 5, "he": 6, "ll": 7, "llo": 8, "hello": 9, "Ġw": 10},
        "merges": [["h", "e"], ["l", "l"], ["ll", "o"], ["he", "llo"], ["Ġ", "w"]]}
  })");
  auto tokenizer = BpeTokenizer::FromJson(json, "tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // BOS, "hello" fully merged, " w" merged, "o" alone, the added token as itself.
  EXPECT_EQ((*tokenizer)->Encode("hello wo<|eot|>"), (std::vector<int64_t>{100, 9, 10, 3, 101}));
}

// Llama-2 style: a BPE tokenizer.model with the identity normalizer and byte fallback, trained
// here on the KJV train split by Debian's spm_train; BOS added as tokenizer_config.json says.
TEST(SentencePieceTokenizer, EncodesTheKjvTestSplitAsTheLibraryDoes) {
  TempDir dir;
  auto train = RunCommand({"/usr/bin/spm_train", "--input=" + KjvDir() + "/train.txt", "--model_prefix=" + (dir / "spm"),
                           "--vocab_size=1000", "--model_type=bpe", "--character_coverage=1.0",
                           "--normalization_rule_name=identity", "--remove_extra_whitespaces=false",
                           "--byte_fallback=true", "--input_sentence_size=20000", "--shuffle_input_sentence=false"},
                          dir / "train.log");
  ASSERT_EQ(train.status, 0) << train.out;
  std::filesystem::create_directories(dir / "model");
  std::filesystem::copy_file(dir / "spm.model", dir / "model/tokenizer.model");
  auto tokenizer = LoadTokenizer(dir / "model");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), 1000);
  // The test split, plus characters the training text never had (byte fallback).
  const std::string text = ReadFile(KjvDir() + "/test.txt").value() + "  Zürich — naïve 😀\n";
  ASSERT_TRUE(WriteFileAtomically(dir / "text.txt", text).ok());
  std::vector<int64_t> ours = (*tokenizer)->Encode(text);
  std::vector<int64_t> reference = ReferenceIds(dir / "spm.model", dir / "text.txt", dir, "spm_encode.py");
  ASSERT_GT(reference.size(), 10000u);
  ASSERT_EQ(ours.size(), reference.size());
  for (size_t i = 0; i < ours.size(); ++i) ASSERT_EQ(ours[i], reference[i]) << "first difference at id " << i;

  const std::vector<int64_t> with_bos = (*tokenizer)->Encode("In the beginning");
  ASSERT_TRUE(WriteFileAtomically(dir / "model/tokenizer_config.json", R"({"add_bos_token": false})").ok());
  EXPECT_EQ(LoadTokenizer(dir / "model").value()->Encode("In the beginning"),
            std::vector<int64_t>(with_bos.begin() + 1, with_bos.end()))
      << "no BOS when the config says so";
}

TEST(SentencePieceTokenizer, RefusesWhatItCannotEncodeExactly) {
  TempDir dir;
  auto train = RunCommand({"/usr/bin/spm_train", "--input=" + KjvDir() + "/valid.txt", "--model_prefix=" + (dir / "uni"),
                           "--vocab_size=300", "--model_type=unigram"},
                          dir / "train.log");
  ASSERT_EQ(train.status, 0) << train.out;
  std::filesystem::create_directories(dir / "model");
  std::filesystem::copy_file(dir / "uni.model", dir / "model/tokenizer.model");
  auto tokenizer = LoadTokenizer(dir / "model");
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_NE(tokenizer.status().message().find("model type 1 is not supported"), std::string::npos) << tokenizer.status();
  ASSERT_TRUE(WriteFileAtomically(dir / "model/tokenizer.model", "not a model").ok());
  EXPECT_EQ(LoadTokenizer(dir / "model").status().code(), absl::StatusCode::kDataLoss);
}

TEST(BpeTokenizer, UnsupportedFilesSaySo) {
  auto t = BpeTokenizer::FromJson({{"model", {{"type", "Unigram"}, {"vocab", nlohmann::json::array()}}}}, "t.json");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("model type 'Unigram' is not supported"), std::string::npos) << t.status();
  TempDir dir;
  EXPECT_EQ(LoadTokenizer(dir.path()).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace shears::engine
