// The dataset readers: every file format to the same ids, clear errors for bad data, and the
// papers' calibration and evaluation windows.
#include "worker/engine/text/dataset.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "common/files.h"
#include "tests/support/process.h"
#include "tests/support/test_util.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace shears::engine {
namespace {

using shears::testing::DataDir;
using shears::testing::TempDir;

const std::string& KjvDir() { return shears::testing::KjvSplitsDir(); }

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
      {"latin1.txt", "na\xefve", "latin1.txt: text is not valid UTF-8 at byte 2"},
      {"surrogate.txt", "ok \xed\xa0\x80", "surrogate.txt: text is not valid UTF-8 at byte 3"},
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

}  // namespace
}  // namespace shears::engine
