// Magnitude, random, Wanda, SparseGPT and SparseLLM on the committed fixtures, unstructured and
// N:M, and the compressed-tensors output: what a user of the pruned model relies on.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/support/model_builders.h"
#include "tests/support/process.h"
#include "tests/support/pruned_model_checks.h"
#include "tests/support/test_util.h"
#include "absl/strings/str_split.h"
#include "worker/engine/io/compressed_tensors.h"
#include "worker/engine/io/model_config.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/methods/masks.h"
#include "worker/engine/methods/sparsegpt.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/prune_model.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::DataDir;
using shears::testing::KjvSplitsDir;
using shears::testing::TempDir;

PruneOptions Options(const std::string& out, Method method, double sparsity, int n = 0, int m = 0) {
  PruneOptions o;
  o.model_dir = DataDir("tiny-llama");
  o.output_dir = out;
  o.method = method;
  o.target_sparsity = sparsity;
  if (m > 0) {
    o.structure = Structure::kNM;
    o.n = n;
    o.m = m;
  }
  // Small, so that every method runs in a second or two; the bench uses 128 windows of 128.
  o.calibration = CalibrationOptions{KjvSplitsDir() + "/train.txt", 16, 64, 1};
  return o;
}

std::map<std::string, torch::Tensor> Weights(const std::string& dir) {
  std::map<std::string, torch::Tensor> out;
  auto model = ModelDir::Open(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return out;
  for (const auto& file : (*model)->files()) {
    for (const auto& info : file->tensors()) out[info.name] = LoadTensor(*file, info);
  }
  return out;
}

// The model's prunable linears, oriented [out, in].
std::map<std::string, torch::Tensor> Linears(const std::string& dir) {
  auto weights = Weights(dir);
  auto model = ModelDir::Open(dir);
  auto arch = MakeArchitecture((*model)->config());
  std::map<std::string, torch::Tensor> out;
  for (int b = 0; b < (*arch)->num_blocks(); ++b) {
    for (const auto& linear : (*arch)->BlockLinears(b)) {
      auto w = weights.at(linear.name);
      out[linear.name] = (*arch)->LinearsStoredTransposed() ? w.t() : w;
    }
  }
  return out;
}

const std::vector<Method> kAllMethods = {Method::kMagnitude, Method::kRandom, Method::kWanda, Method::kSparseGpt,
                                         Method::kSparseLlm};

std::string MethodName(Method m) {
  switch (m) {
    case Method::kMagnitude: return "magnitude";
    case Method::kRandom: return "random";
    case Method::kWanda: return "wanda";
    case Method::kSparseGpt: return "sparsegpt";
    case Method::kSparseLlm: return "sparsellm";
  }
  return "?";
}

class EveryMethod : public ::testing::TestWithParam<Method> {};

TEST_P(EveryMethod, HitsAnUnstructuredTargetExactly) {
  TempDir dir;
  auto report = PruneModel(Options(dir / "out", GetParam(), 0.6), {});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->layers.size(), 14u);
  for (const auto& [name, w] : Linears(dir / "out")) {
    auto zeros = (w == 0);
    if (GetParam() == Method::kWanda) {
      // Wanda compares within each output row: every row holds exactly its share.
      EXPECT_TRUE(torch::all(zeros.sum(1) == PrunedCount(w.size(1), 0.6)).item<bool>()) << name;
    } else {
      EXPECT_EQ(zeros.sum().item<int64_t>(), PrunedCount(w.numel(), 0.6)) << name;
    }
  }
  for (const auto& layer : report->layers) {
    EXPECT_GT(layer.reconstruction_error, 0.0) << layer.name;
    EXPECT_LT(layer.reconstruction_error, 1.0) << layer.name;
    EXPECT_GE(layer.seconds, 0.0) << layer.name;
  }
  // Block Influence of the dense and the pruned model, block by block.
  ASSERT_EQ(report->redundancy.size(), 2u);
  EXPECT_EQ(report->redundancy[0].model, "dense");
  EXPECT_EQ(report->redundancy[1].model, "pruned");
  ASSERT_EQ(report->redundancy[1].blocks.size(), 2u);
  EXPECT_NE(report->redundancy[0].blocks[1].block_influence, report->redundancy[1].blocks[1].block_influence);
  // Per-row selection rounds per row: the narrowest rows (64 inputs) set the bound.
  EXPECT_NEAR(report->achieved_sparsity(), 0.6, GetParam() == Method::kWanda ? 0.5 / 64 : 1e-4);
}

// The pruned model's Block Influence is measured as the calibration windows go through it block
// by block; it equals a pass over the model read back from the output (which the neuron measures
// still take).
TEST(BlockInfluence, OfThePrunedModelAlongTheWayEqualsAPassOverTheOutput) {
  TempDir dir;
  auto along = PruneModel(Options(dir / "along", Method::kWanda, 0.5), {});
  auto options = Options(dir / "read-back", Method::kWanda, 0.5);
  options.neuron_measures = true;
  auto read_back = PruneModel(options, {});
  ASSERT_TRUE(along.ok()) << along.status();
  ASSERT_TRUE(read_back.ok()) << read_back.status();
  ASSERT_EQ(along->redundancy.size(), 2u);
  ASSERT_EQ(read_back->redundancy.size(), 2u);
  for (size_t m = 0; m < 2; ++m) {
    EXPECT_EQ(along->redundancy[m].model, read_back->redundancy[m].model);
    const auto& a = along->redundancy[m].blocks;
    const auto& b = read_back->redundancy[m].blocks;
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].block, b[i].block);
      EXPECT_NEAR(a[i].block_influence, b[i].block_influence, 1e-9) << along->redundancy[m].model << " block " << i;
    }
  }
  EXPECT_TRUE(along->redundancy[1].ffns.empty());
  EXPECT_FALSE(read_back->redundancy[1].ffns.empty());
}

TEST_P(EveryMethod, HitsNMTargetsInEveryGroup) {
  for (auto [n, m] : {std::pair{2, 4}, std::pair{4, 8}}) {
    TempDir dir;
    auto report = PruneModel(Options(dir / "out", GetParam(), 0.0, n, m), {});
    ASSERT_TRUE(report.ok()) << report.status();
    for (const auto& [name, w] : Linears(dir / "out")) {
      auto zeros_per_group = (w == 0).reshape({-1, m}).sum(1);
      EXPECT_TRUE(torch::all(zeros_per_group == m - n).item<bool>())
          << name << " " << n << ":" << m << ": groups with " << zeros_per_group.min().item<int64_t>() << " to "
          << zeros_per_group.max().item<int64_t>() << " zeros";
    }
    EXPECT_DOUBLE_EQ(report->achieved_sparsity(), 1.0 - double(n) / m);
  }
}

TEST_P(EveryMethod, PrunesGpt2AndOptAlongTheirInputs) {
  // GPT-2 stores its linears transposed ([in, out]) and has biases and GELU; OPT has biases and ReLU.
  TempDir dir;
  shears::testing::WriteSyntheticOpt(dir / "opt", 2, 64, 128, 2048, 64, true);
  fs::copy_file(DataDir("tiny-llama") + "/tokenizer.json", dir / "opt/tokenizer.json");  // same 2048 ids
  for (const std::string model : {DataDir("tiny-gpt2"), dir / "opt"}) {
    auto options = Options(dir / "out", GetParam(), 0.0, 2, 4);
    options.model_dir = model;
    auto report = PruneModel(options, {});
    ASSERT_TRUE(report.ok()) << model << ": " << report.status();
    for (const auto& [name, w] : Linears(dir / "out")) {
      EXPECT_TRUE(torch::all((w == 0).reshape({-1, 4}).sum(1) == 2).item<bool>()) << model << " " << name;
    }
    for (const auto& layer : report->layers) EXPECT_LT(layer.reconstruction_error, 1.0) << layer.name;
    fs::remove_all(dir / "out");
  }
}

INSTANTIATE_TEST_SUITE_P(Methods, EveryMethod, ::testing::ValuesIn(kAllMethods),
                         [](const auto& info) { return MethodName(info.param); });

// The published algorithms as their authors' code runs them (tests/reference/prune.py: Wanda's
// rule, SparseGPT's fasterprune, SparseLLM's alternating optimization), on the same windows.
struct ReferenceCase {
  Method method;
  const char* args;  // the reference's method and options
  int n, m;
  double max_mask_mismatch;  // share of the weights whose pruned-or-kept decision may differ
  double max_weight_error;   // ‖Ŵ − W_ref‖ / ‖W_ref‖, per linear
};

class AgainstTheReferenceCode : public ::testing::TestWithParam<ReferenceCase> {};

TEST_P(AgainstTheReferenceCode, PrunesAsThePublishedCodeDoes) {
  const ReferenceCase& c = GetParam();
  TempDir dir;
  auto options = Options(dir / "out", c.method, c.n ? 0.0 : 0.5, c.n, c.m);
  ASSERT_TRUE(PruneModel(options, {}).ok());

  auto model = ModelDir::Open(DataDir("tiny-llama"));
  ASSERT_TRUE(model.ok());
  auto config = ModelConfig::Parse((*model)->config());
  ASSERT_TRUE(config.ok());
  JobDatasets data(**model, *config);
  auto windows = data.CalibrationWindows(*options.calibration);
  ASSERT_TRUE(windows.ok()) << windows.status();
  const torch::Tensor ids = windows->to(torch::kInt64).contiguous();
  ASSERT_TRUE(WriteFileAtomically(dir / "windows.bin", std::string(reinterpret_cast<const char*>(ids.data_ptr<int64_t>()),
                                                          ids.numel() * sizeof(int64_t)))
                  .ok());
  std::vector<std::string> argv = {"/usr/bin/python3", std::string(SHEARS_SOURCE_DIR) + "/tests/reference/prune.py",
                                   DataDir("tiny-llama"), dir / "windows.bin", std::to_string(ids.size(1))};
  for (const auto& word : absl::StrSplit(c.args, ' ')) argv.emplace_back(word);
  for (const char* word : {"--threads", "1", "--save"}) argv.emplace_back(word);
  argv.push_back(dir / "reference");
  auto run = shears::testing::RunCommand(argv, dir / "reference.log");
  ASSERT_EQ(run.status, 0) << run.out;

  auto ours = Linears(dir / "out"), theirs = Linears(dir / "reference");
  ASSERT_EQ(ours.size(), 14u);
  for (const auto& [name, w] : ours) {
    const torch::Tensor& ref = theirs.at(name);
    const double mismatch = ((w == 0) != (ref == 0)).to(torch::kFloat64).mean().item<double>();
    EXPECT_LE(mismatch, c.max_mask_mismatch) << name;
    EXPECT_LE(((w - ref).norm() / ref.norm()).item<double>(), c.max_weight_error) << name;
  }
  const double ppl = shears::testing::TestSplitPerplexity(dir / "out");
  const double reference_ppl = shears::testing::TestSplitPerplexity(dir / "reference");
  EXPECT_NEAR(ppl, reference_ppl, 0.01 * reference_ppl);
}

// Wanda's masks are the reference's exactly; SparseGPT's and SparseLLM's solves agree up to the
// float rounding that flips a few near-threshold weights (about 0.03% of them for SparseGPT);
// SparseLLM keeps its best iterate where the reference keeps the last (up to 0.7% differ).
INSTANTIATE_TEST_SUITE_P(
    Methods, AgainstTheReferenceCode,
    ::testing::Values(ReferenceCase{Method::kWanda, "wanda", 0, 0, 0.0, 0.0},
                      ReferenceCase{Method::kWanda, "wanda --nm 2:4", 2, 4, 0.0, 0.0},
                      ReferenceCase{Method::kSparseGpt, "sparsegpt", 0, 0, 0.002, 0.05},
                      ReferenceCase{Method::kSparseGpt, "sparsegpt --nm 2:4", 2, 4, 0.002, 0.05},
                      ReferenceCase{Method::kSparseLlm, "sparsellm", 0, 0, 0.02, 0.1}),
    [](const auto& info) {
      std::string name = info.param.args;
      for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
      return name;
    });

TEST(RandomPruning, IsReproducibleBySeed) {
  TempDir dir;
  auto options = Options(dir / "unused", Method::kRandom, 0.5);
  options.seed = 7;
  shears::testing::ExpectReproducibleBySeed(options, dir.path());
}

TEST(SparseGpt, AtZeroSparsityReproducesTheDenseModel) {
  TempDir dir;
  auto options = Options(dir / "out", Method::kSparseGpt, 0.0);
  options.evaluation = EvaluationOptions{KjvSplitsDir() + "/test.txt", 64, 4096};
  auto report = PruneModel(options, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(ReadFile(dir / "out/model.safetensors").value(), ReadFile(DataDir("tiny-llama") + "/model.safetensors").value());
  EXPECT_EQ(report->evaluation->pruned_perplexity, report->evaluation->dense_perplexity);
  for (const auto& layer : report->layers) EXPECT_EQ(layer.reconstruction_error, 0.0) << layer.name;
}

TEST(SparseGpt, ReconstructsBetterThanMagnitudeOnTheSameInputs) {
  // Block 0 sees the same calibration inputs under both methods.
  TempDir dir;
  auto magnitude = PruneModel(Options(dir / "m", Method::kMagnitude, 0.7), {});
  auto sparsegpt = PruneModel(Options(dir / "s", Method::kSparseGpt, 0.7), {});
  ASSERT_TRUE(magnitude.ok() && sparsegpt.ok());
  for (size_t i = 0; i < 7; ++i) {
    EXPECT_LT(sparsegpt->layers[i].reconstruction_error, magnitude->layers[i].reconstruction_error)
        << sparsegpt->layers[i].name;
  }
}

TEST(SparseGpt, RaisesTheDampeningOfAHessianThatIsNotPositiveDefinite) {
  torch::manual_seed(0);
  auto x = torch::randn({8, 32});  // fewer tokens than inputs: rank 8 of 32
  auto hessian = 2 * x.t().matmul(x) / 8;
  hessian.diagonal().sub_(0.05 * hessian.diagonal().mean());  // rounding pushed it below zero
  hessian.diagonal().slice(0, 0, 3).zero_();                   // and three inputs are dead
  hessian.slice(0, 0, 3).zero_();
  hessian.slice(1, 0, 3).zero_();
  ASSERT_FALSE(std::get<1>(torch::linalg_cholesky_ex(hessian + 0.01 * hessian.diagonal().mean() * torch::eye(32)))
                   .item<int64_t>() == 0)
      << "the 1% dampening alone must not be enough for this test";
  auto weight = torch::randn({16, 32});
  ASSERT_TRUE(SparseGptPrune(weight, hessian, SparsityTarget{0.5}).ok());
  EXPECT_EQ((weight == 0).sum().item<int64_t>(), 16 * 16);
  EXPECT_TRUE(torch::all(weight.slice(1, 0, 3) == 0).item<bool>()) << "dead inputs' weights go";
  EXPECT_TRUE(torch::isfinite(weight).all().item<bool>());
}

TEST(SparseLlm, WithOneIterationIsSparseGpt) {
  // SparseLLM's first iteration prunes the dense weights with SparseGPT's solver; the later ones
  // are what the method adds.
  TempDir dir;
  auto sparsegpt = PruneModel(Options(dir / "s", Method::kSparseGpt, 0.7), {});
  auto one = Options(dir / "one", Method::kSparseLlm, 0.7);
  one.sparsellm.iterations = 1;
  auto sparsellm = PruneModel(one, {});
  auto more = Options(dir / "more", Method::kSparseLlm, 0.7);
  more.sparsellm.iterations = 4;
  ASSERT_TRUE(sparsegpt.ok() && sparsellm.ok() && PruneModel(more, {}).ok());
  auto a = Linears(dir / "s"), b = Linears(dir / "one"), c = Linears(dir / "more");
  for (const auto& [name, w] : a) {
    EXPECT_TRUE(torch::allclose(w, b.at(name), 1e-3, 1e-4)) << name;
    if (name.find("mlp") != std::string::npos) EXPECT_FALSE(torch::allclose(w, c.at(name), 1e-3, 1e-4)) << name;
  }
}

TEST(PruneTargets, BadNMIsRejectedWithTheReason) {
  TempDir dir;
  auto status = PruneModel(Options(dir / "out", Method::kWanda, 0.0, 4, 4), {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("n_m: N must be in [1, M), got 4:4"), std::string::npos) << status;
  // The FFN of tiny-llama is 176 wide: groups of 32 do not tile it.
  status = PruneModel(Options(dir / "out", Method::kMagnitude, 0.0, 16, 32), {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("n_m: M=32 does not divide the 176 inputs of model.layers.0.mlp.down_proj.weight"),
            std::string::npos)
      << status;
}

TEST(PruneTargets, TooLittleCalibrationDataIsRejected) {
  TempDir dir;
  auto options = Options(dir / "out", Method::kSparseGpt, 0.5);
  options.calibration->num_samples = 60000;
  auto status = PruneModel(options, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("fewer than the 60000 windows of 64 tokens asked for (3840000)"), std::string::npos)
      << status;
}

// The compressed layouts: checked by the independent reference reader, smaller on disk, and read
// back by the engine itself.
struct FormatCase {
  OutputFormat format;
  const char* name;
  int n, m;
};

class CompressedOutput : public ::testing::TestWithParam<FormatCase> {};

TEST_P(CompressedOutput, DecompressesToTheDenseOutputBitForBitAndIsSmaller) {
  const FormatCase& c = GetParam();
  TempDir dir;
  auto dense = Options(dir / "dense", Method::kWanda, 0.5, c.n, c.m);
  auto dense_report = PruneModel(dense, {});
  ASSERT_TRUE(dense_report.ok()) << dense_report.status();
  auto compressed = Options(dir / "compressed", Method::kWanda, 0.5, c.n, c.m);
  compressed.format = c.format;
  auto report = PruneModel(compressed, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->files, (std::vector<std::string>{"config.json", "model.safetensors", "tokenizer.json"}));
  EXPECT_FALSE(fs::exists(dir / ".compressed.dense")) << "the staging directory is removed";

  auto config = nlohmann::json::parse(ReadFile(dir / "compressed/config.json").value());
  const auto& sparsity = config["quantization_config"]["sparsity_config"];
  EXPECT_EQ(config["quantization_config"]["quant_method"], "compressed-tensors");
  EXPECT_EQ(sparsity["format"], c.name);
  EXPECT_EQ(sparsity["sparsity_structure"], c.m ? "2:4" : "unstructured");
  EXPECT_NEAR(sparsity["global_sparsity"].get<double>(), 0.5, 1e-6);

  auto run = shears::testing::RunCommand({"/usr/bin/python3", std::string(SHEARS_SOURCE_DIR) + "/tests/reference/ct_check.py",
                                          dir / "compressed", dir / "dense"},
                                         dir / "ct_check.log");
  EXPECT_EQ(run.status, 0) << run.out;
  EXPECT_NE(run.out.find("OK " + std::string(c.name) + ": 21 tensors equal, 14 decompressed"), std::string::npos)
      << run.out;

  const auto dense_size = fs::file_size(dir / "dense/model.safetensors");
  const auto compressed_size = fs::file_size(dir / "compressed/model.safetensors");
  EXPECT_LT(compressed_size, dense_size);

  // The engine reads its own output back: decompressed, and pruned again (at 0, i.e. evaluated).
  ASSERT_TRUE(DecompressModel(dir / "compressed", dir / "back").ok());
  EXPECT_EQ(ReadFile(dir / "back/model.safetensors").value(), ReadFile(dir / "dense/model.safetensors").value());
  PruneOptions again;
  again.model_dir = dir / "compressed";
  again.output_dir = dir / "again";
  again.evaluation = EvaluationOptions{KjvSplitsDir() + "/test.txt", 64, 4096};
  auto evaluated = PruneModel(again, {});
  ASSERT_TRUE(evaluated.ok()) << evaluated.status();
  EXPECT_EQ(ReadFile(dir / "again/model.safetensors").value(), ReadFile(dir / "dense/model.safetensors").value());
  EXPECT_EQ(evaluated->evaluation->dense_perplexity, evaluated->evaluation->pruned_perplexity);
  EXPECT_FALSE(fs::exists(dir / ".again.input")) << "the decompressed input is removed";
}

INSTANTIATE_TEST_SUITE_P(Formats, CompressedOutput,
                         ::testing::Values(FormatCase{OutputFormat::kSparseBitmask, kSparseBitmaskFormat, 0, 0},
                                           FormatCase{OutputFormat::kSparse24Bitmask, kSparse24BitmaskFormat, 2, 4}),
                         [](const auto& info) { return std::string(info.param.m ? "TwoFour" : "Bitmask"); });

TEST(CompressedOutput, TwoFourLayoutRefusesOtherSparsity) {
  TempDir dir;
  auto options = Options(dir / "out", Method::kMagnitude, 0.5);
  options.format = OutputFormat::kSparse24Bitmask;
  auto status = PruneModel(options, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("sparse-24-bitmask format needs 2:4 sparsity"), std::string::npos) << status;
  auto weight = torch::tensor({{1.0f, 2.0f, 3.0f, 0.0f}});
  EXPECT_FALSE(CompressWeight("x.weight", weight, kSparse24BitmaskFormat).ok()) << "three non-zeros in a group of 4";
}

}  // namespace
}  // namespace shears::engine
