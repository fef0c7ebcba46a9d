// Tokenizer and dataset readers: agreement with the reference on the KJV test split, each file
// format, and the errors bad data gets.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>

#include "common/files.h"
#include "tests/process.h"
#include "tests/test_util.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/text/bpe_tokenizer.h"

#include <filesystem>
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace shears::engine {
namespace {

using shears::testing::Binary;
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

void WriteBytes(const std::string& path, const std::string& bytes) { ASSERT_TRUE(WriteFileAtomically(path, bytes).ok()); }

std::string Npy(const std::string& descr, const std::string& data, size_t count) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + std::to_string(count) + ",), }";
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

TEST(Dataset, ReadsEveryFormatToTheSameIds) {
  TempDir dir;
  auto tokenizer = LoadTokenizer(DataDir("tiny-llama"));
  ASSERT_TRUE(tokenizer.ok());
  const std::string text = "In the beginning God created the heaven and the earth.";
  const std::vector<int64_t> ids = (*tokenizer)->Encode(text);

  std::string u16, u32, i64;
  for (int64_t id : ids) {
    u16.append(reinterpret_cast<const char*>(&id), 2);
    u32.append(reinterpret_cast<const char*>(&id), 4);
    i64.append(reinterpret_cast<const char*>(&id), 8);
  }
  WriteBytes(dir / "a.txt", text);
  WriteBytes(dir / "a.jsonl", "{\"text\": \"In the beginning God created\"}\n\n{\"text\": \"the heaven\"}\n");
  WriteBytes(dir / "a.bin", u16);
  WriteBytes(dir / "a.u32.bin", u32);
  WriteBytes(dir / "a.npy", Npy("<u2", u16, ids.size()));
  WriteBytes(dir / "b.npy", Npy("<i8", i64, ids.size()));
  auto expect = torch::tensor(ids, torch::kInt64);
  for (const char* name : {"a.txt", "a.bin", "a.u32.bin", "a.npy", "b.npy"}) {
    auto got = LoadTokenIds(dir / name, tokenizer->get(), 2048);
    ASSERT_TRUE(got.ok()) << name << ": " << got.status();
    EXPECT_TRUE(torch::equal(*got, expect)) << name;
  }
  auto jsonl = LoadTokenIds(dir / "a.jsonl", tokenizer->get(), 2048);
  ASSERT_TRUE(jsonl.ok()) << jsonl.status();
  EXPECT_TRUE(torch::equal(*jsonl, torch::tensor((*tokenizer)->Encode("In the beginning God created\n\nthe heaven"))));
}

TEST(Dataset, BadDataGetsAClearError) {
  TempDir dir;
  auto tokenizer = LoadTokenizer(DataDir("tiny-llama"));
  struct Case {
    std::string name, bytes, message;
  };
  const std::vector<Case> cases = {
      {"empty.txt", "", "empty.txt: the dataset is empty"},
      {"odd.bin", "abc", "odd.bin: 3 bytes is not a whole number of uint16 ids"},
      {"big.bin", std::string("\x01\x00\xff\xff", 4), "big.bin: id 65535 at position 1 is outside the vocabulary of 2048"},
      {"bad.jsonl", "{\"text\": \"ok\"}\n{\"body\": 1}\n", "bad.jsonl: line 2 is not a JSON object"},
      {"bad.npy", "not numpy", "bad.npy: not a .npy file"},
      {"float.npy", Npy("<f4", std::string(8, '\0'), 2), "is not an integer type"},
  };
  for (const auto& c : cases) {
    WriteBytes(dir / c.name, c.bytes);
    auto got = LoadTokenIds(dir / c.name, tokenizer->get(), 2048);
    ASSERT_FALSE(got.ok()) << c.name;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(got.status().message().find(c.message), std::string::npos) << got.status();
  }
  WriteBytes(dir / "t.txt", "text");
  EXPECT_EQ(LoadTokenIds(dir / "t.txt", nullptr, 2048).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(LoadTokenIds(dir / "missing.txt", nullptr, 2048).status().code(), absl::StatusCode::kNotFound);
}

TEST(Dataset, WindowsFollowThePapersProtocols) {
  auto ids = torch::arange(1000, torch::kInt64);
  auto eval = EvaluationWindows(ids, 128, 0);
  ASSERT_TRUE(eval.ok());
  EXPECT_EQ(eval->sizes(), (std::vector<int64_t>{7, 128}));
  EXPECT_EQ((*eval)[1][0].item<int64_t>(), 128) << "consecutive, non-overlapping";
  EXPECT_EQ(EvaluationWindows(ids, 128, 300)->size(0), 2) << "token budget";
  EXPECT_FALSE(EvaluationWindows(ids, 2000, 0).ok());

  auto a = CalibrationWindows(ids, 15, 64, 5);
  auto b = CalibrationWindows(ids, 15, 64, 5);
  auto c = CalibrationWindows(ids, 15, 64, 6);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->sizes(), (std::vector<int64_t>{15, 64}));
  EXPECT_TRUE(torch::equal(*a, *b)) << "same seed, same windows";
  EXPECT_FALSE(torch::equal(*a, *c));
  // Each window is a contiguous run of the data.
  EXPECT_TRUE(torch::equal((*a).select(0, 3), torch::arange((*a)[3][0].item<int64_t>(), (*a)[3][0].item<int64_t>() + 64)));
  EXPECT_FALSE(CalibrationWindows(ids, 4, 1000, 0).ok());
  auto too_many = CalibrationWindows(ids, 16, 64, 0);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_many.status().message().find("1000 tokens, fewer than the 16 windows of 64 tokens asked for (1024)"),
            std::string::npos)
      << too_many.status();
}

// The perplexity protocol of the seeds, on the KJV test split, equal to the reference's.
TEST(Perplexity, OfTheFixtureMatchesTheReference) {
  TempDir dir;
  for (const std::string fixture : {"tiny-llama", "tiny-gpt2"}) {
    auto model = ModelDir::Open(DataDir(fixture));
    ASSERT_TRUE(model.ok());
    auto arch = MakeArchitecture((*model)->config());
    auto tokenizer = LoadTokenizer(DataDir(fixture));
    ASSERT_TRUE(arch.ok() && tokenizer.ok());
    auto ids = LoadTokenIds(KjvDir() + "/test.txt", tokenizer->get(), 2048);
    ASSERT_TRUE(ids.ok());
    auto windows = EvaluationWindows(*ids, 128, 16384);
    ASSERT_TRUE(windows.ok());
    BlockRunner runner(**model, **arch, torch::kCPU);
    const double ours = Perplexity(runner, *windows);

    auto flat = windows->contiguous();
    std::ofstream(dir / "ids.bin", std::ios::binary)
        .write(static_cast<const char*>(flat.data_ptr()), flat.numel() * sizeof(int64_t));
    auto run = RunCommand({"/usr/bin/python3", std::string(SHEARS_SOURCE_DIR) + "/tests/reference/forward.py",
                           DataDir(fixture), dir / "ids.bin", std::to_string(windows->size(0)), "128", dir / "ref"},
                          dir / "ref.log");
    ASSERT_EQ(run.status, 0) << run.out;
    const double reference = std::stod(ReadFile(dir / "ref.ppl").value());
    EXPECT_NEAR(ours / reference, 1.0, 1e-3) << fixture << ": ours " << ours << ", reference " << reference;
    EXPECT_LT(ours, 100) << "a trained model, not noise";
  }
}

}  // namespace
}  // namespace shears::engine
