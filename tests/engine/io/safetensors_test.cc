#include "worker/engine/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "common/files.h"
#include "common/sha256.h"
#include "tests/support/test_util.h"

namespace shears::engine {
namespace {

using shears::testing::TempDir;

std::vector<uint8_t> Bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(seed + 31 * i);
  return out;
}

// A file written by hand, so the reader is checked against the format, not against our writer.
std::string RawFile(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

class SafetensorsRoundTrip : public ::testing::TestWithParam<DType> {};

TEST_P(SafetensorsRoundTrip, BytesShapesAndMetadataSurvive) {
  TempDir dir;
  const DType dtype = GetParam();
  const std::vector<TensorDecl> decls = {{"a.weight", dtype, {3, 5}}, {"b.bias", dtype, {7}}, {"empty", dtype, {0, 4}}};
  std::map<std::string, std::vector<uint8_t>> data;
  {
    auto w = SafetensorsWriter::Create(dir / "m.safetensors", decls, {{"format", "pt"}});
    ASSERT_TRUE(w.ok()) << w.status();
    // Out of declaration order on purpose: each tensor lands at its own offset.
    for (int i = static_cast<int>(decls.size()) - 1; i >= 0; --i) {
      const auto& d = decls[i];
      int64_t n = 1;
      for (auto s : d.shape) n *= s;
      data[d.name] = Bytes(static_cast<size_t>(n) * DTypeSize(dtype), static_cast<uint8_t>(i + 1));
      ASSERT_TRUE((*w)->Write(d.name, data[d.name]).ok());
    }
    ASSERT_TRUE((*w)->Close().ok());
    // The digest computed while writing (here every tensor but the last was read back) is the
    // file's.
    EXPECT_EQ((*w)->sha256(), Sha256File(dir / "m.safetensors").value());
  }
  auto f = SafetensorsFile::Open(dir / "m.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  ASSERT_EQ((*f)->tensors().size(), 3u);
  for (const auto& d : decls) {
    const TensorInfo* info = (*f)->Find(d.name);
    ASSERT_NE(info, nullptr) << d.name;
    EXPECT_EQ(info->dtype, dtype);
    EXPECT_EQ(info->shape, d.shape);
    auto bytes = (*f)->Data(*info);
    EXPECT_EQ(std::vector<uint8_t>(bytes.begin(), bytes.end()), data[d.name]) << d.name;
  }
}

INSTANTIATE_TEST_SUITE_P(AllFloatDTypes, SafetensorsRoundTrip,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kF64, DType::kI64,
                                           DType::kU8),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(SafetensorsWriter, RefusesMissingOrWrongSizedTensors) {
  TempDir dir;
  auto w = SafetensorsWriter::Create(dir / "m.safetensors", {{"x", DType::kF32, {2}}, {"y", DType::kF32, {2}}});
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE((*w)->Write("x", Bytes(4, 0)).ok());  // 4 bytes, declared 8
  EXPECT_FALSE((*w)->Write("nope", Bytes(8, 0)).ok());
  ASSERT_TRUE((*w)->Write("x", Bytes(8, 0)).ok());
  EXPECT_FALSE((*w)->Write("x", Bytes(8, 0)).ok());  // twice
  absl::Status closed = (*w)->Close();
  EXPECT_FALSE(closed.ok());
  EXPECT_NE(closed.message().find("tensor y was never written"), std::string::npos) << closed;
}

TEST(SafetensorsWriter, TheDigestOfAResumedFileCoversWhatTheEarlierWriterWrote) {
  TempDir dir;
  const std::vector<TensorDecl> decls = {{"a", DType::kF32, {1000}}, {"b", DType::kF32, {3}}, {"c", DType::kBF16, {5}}};
  {
    auto first = SafetensorsWriter::Create(dir / "m.safetensors", decls);
    ASSERT_TRUE(first.ok());
    ASSERT_TRUE((*first)->Write("b", Bytes(12, 2)).ok());
    ASSERT_TRUE((*first)->Sync().ok());
  }  // the attempt dies
  auto resumed = SafetensorsWriter::Resume(dir / "m.safetensors", decls);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  (*resumed)->MarkWritten("b");
  ASSERT_TRUE((*resumed)->Write("a", Bytes(4000, 1)).ok());
  ASSERT_TRUE((*resumed)->Write("c", Bytes(10, 3)).ok());
  ASSERT_TRUE((*resumed)->Close().ok());
  EXPECT_EQ((*resumed)->sha256().size(), 64u);
  EXPECT_EQ((*resumed)->sha256(), Sha256File(dir / "m.safetensors").value());
}

struct CorruptCase {
  std::string name;
  std::string contents;
  std::string expected;  // a fragment of the error message
};

class SafetensorsCorrupt : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(SafetensorsCorrupt, FailsWithDataLossNamingTheProblem) {
  TempDir dir;
  const std::string path = dir / "bad.safetensors";
  ASSERT_TRUE(WriteFileAtomically(path, GetParam().contents).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status();
  EXPECT_NE(f.status().message().find(GetParam().expected), std::string::npos) << f.status();
  EXPECT_NE(f.status().message().find(path), std::string::npos) << "the message names the file: " << f.status();
}

const std::string kGood = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";

INSTANTIATE_TEST_SUITE_P(
    Cases, SafetensorsCorrupt,
    ::testing::Values(
        CorruptCase{"TooShort", "abc", "too short for the 8-byte header length"},
        CorruptCase{"HeaderLengthBeyondFile", RawFile(kGood, std::string(16, '\0')).substr(0, 20),
                    "header length"},
        CorruptCase{"HugeHeaderLength", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", "header length"},
        CorruptCase{"BadJson", RawFile("{\"w\": [1, 2", std::string(16, '\0')), "not valid JSON"},
        CorruptCase{"NotAnObject", RawFile("[1,2,3]", ""), "not a JSON object"},
        CorruptCase{"UnknownDType",
                    RawFile(R"({"w":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')),
                    "unknown dtype 'F99'"},
        CorruptCase{"OffsetsOutsideFile", RawFile(kGood, std::string(8, '\0')), "lie outside the data section"},
        CorruptCase{"OffsetsReversed",
                    RawFile(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", std::string(8, '\0')),
                    "lie outside the data section"},
        CorruptCase{"ShapeDisagreesWithOffsets",
                    RawFile(R"({"w":{"dtype":"F32","shape":[3,2],"data_offsets":[0,16]}})", std::string(16, '\0')),
                    "shape [3, 2] of F32 needs 24 bytes but data_offsets span 16"},
        CorruptCase{"DTypeDisagreesWithOffsets",
                    RawFile(R"({"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,16]}})", std::string(16, '\0')),
                    "needs 8 bytes but data_offsets span 16"},
        CorruptCase{"NegativeDimension",
                    RawFile(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0')),
                    "not a non-negative integer"},
        CorruptCase{"MissingOffsets", RawFile(R"({"w":{"dtype":"F32","shape":[1]}})", std::string(4, '\0')),
                    "data_offsets is not a pair"},
        CorruptCase{"Overlap",
                    RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            std::string(12, '\0')),
                    "overlap"}),
    [](const auto& info) { return info.param.name; });

TEST(SafetensorsFile, MissingFileIsNotFound) {
  auto f = SafetensorsFile::Open("/nonexistent/model.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace shears::engine
