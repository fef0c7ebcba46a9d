// The engine end to end on the committed fixtures: what a user of the pruned model relies on.
#include "worker/engine/prune_model.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <set>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/model_builders.h"
#include "tests/process.h"
#include "tests/pruned_model_checks.h"
#include "tests/test_util.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"
#include "worker/engine/model/layers.h"
#include "worker/engine/methods/magnitude.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/tensor_io.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::DataDir;
using shears::testing::ExpectMagnitudePruned;
using shears::testing::RewriteModel;
using shears::testing::TempDir;

PruneOptions Options(const std::string& model, const std::string& out, double sparsity) {
  PruneOptions o;
  o.model_dir = model;
  o.output_dir = out;
  o.target_sparsity = sparsity;
  return o;
}

class MagnitudeOnFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(MagnitudeOnFixture, HitsTargetAndLeavesEverythingElseIdentical) {
  TempDir dir;
  const std::string model = DataDir(GetParam());
  std::vector<LayerReport> streamed;
  PruneObserver observer;
  observer.on_layer = [&](const LayerReport& l) { streamed.push_back(l); };
  auto report = PruneModel(Options(model, dir / "out", 0.5), observer);
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectMagnitudePruned(model, dir / "out", 0.5);
  EXPECT_NEAR(report->achieved_sparsity(), 0.5, 1e-3);
  EXPECT_EQ(streamed.size(), report->layers.size());
  for (const auto& l : report->layers) EXPECT_NEAR(double(l.zeros) / l.parameters, 0.5, 1.0 / l.parameters) << l.name;
  // The output is a complete model directory.
  EXPECT_EQ(ReadFile(dir / "out/config.json").value(), ReadFile(model + "/config.json").value());
  EXPECT_EQ(ReadFile(dir / "out/tokenizer.json").value(), ReadFile(model + "/tokenizer.json").value());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MagnitudeOnFixture, ::testing::Values("tiny-llama", "tiny-gpt2"),
                         [](const auto& info) { return info.param == "tiny-llama" ? "Llama" : "Gpt2"; });

struct Variant {
  std::string name;
  torch::ScalarType dtype;
  int shards;
};

class MagnitudeOnVariants : public ::testing::TestWithParam<Variant> {};

TEST_P(MagnitudeOnVariants, KeepsDTypesAndShardLayout) {
  TempDir dir;
  RewriteModel(DataDir("tiny-llama"), dir / "in", GetParam().dtype, GetParam().shards);
  auto report = PruneModel(Options(dir / "in", dir / "out", 0.7), {});
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectMagnitudePruned(dir / "in", dir / "out", 0.7);
  EXPECT_EQ(fs::exists(dir / "out/model.safetensors.index.json"), GetParam().shards > 1);
}

INSTANTIATE_TEST_SUITE_P(Layouts, MagnitudeOnVariants,
                         ::testing::Values(Variant{"F16", torch::kFloat16, 1}, Variant{"BF16", torch::kBFloat16, 1},
                                           Variant{"F32Sharded", torch::kFloat32, 3},
                                           Variant{"BF16Sharded", torch::kBFloat16, 2}),
                         [](const auto& info) { return info.param.name; });

TEST(PruneModel, ZeroSparsityCopiesTheModelUnchanged) {
  TempDir dir;
  auto report = PruneModel(Options(DataDir("tiny-llama"), dir / "out", 0.0), {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->parameters_after, report->parameters_before);
  auto in = ModelDir::Open(DataDir("tiny-llama"));
  auto out = ModelDir::Open(dir / "out");
  ASSERT_TRUE(in.ok() && out.ok());
  for (const auto& info : in.value()->files()[0]->tensors()) {
    auto a = in.value()->files()[0]->Data(info);
    const auto* o = out.value()->Find(info.name);
    ASSERT_NE(o, nullptr) << info.name;
    auto b = o->file->Data(*o->info);
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << info.name;
  }
}

double PerplexityOfModel(const std::string& dir, const torch::Tensor& windows) {
  auto model = ModelDir::Open(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  auto arch = MakeArchitecture((*model)->config());
  BlockRunner runner(**model, **arch, torch::kCPU);
  return Perplexity(runner, windows);
}

TEST(PruneModel, EvaluatesTheDenseAndThePrunedModelOnTheSameWindows) {
  TempDir dir;
  PruneOptions options = Options(DataDir("tiny-llama"), dir / "out", 0.5);
  options.evaluation = EvaluationOptions{shears::testing::KjvSplitsDir() + "/test.txt", 64, 4000};
  std::vector<std::string> stages;
  PruneObserver observer;
  observer.on_progress = [&](const std::string& stage, double, const std::string&) { stages.push_back(stage); };
  auto report = PruneModel(options, observer);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->evaluation.has_value());
  const auto& e = *report->evaluation;
  EXPECT_EQ(e.windows, 4000 / 64);
  EXPECT_EQ(e.predicted_tokens, e.windows * 63);
  EXPECT_NE(std::find(stages.begin(), stages.end(), "evaluating"), stages.end());

  // The same numbers as a separate run over each model directory.
  auto tokenizer = LoadTokenizer(DataDir("tiny-llama"));
  auto ids = LoadTokenIds(options.evaluation->path, tokenizer->get(), 2048);
  auto windows = EvaluationWindows(*ids, 64, 4000);
  ASSERT_TRUE(windows.ok());
  EXPECT_NEAR(e.dense_perplexity / PerplexityOfModel(DataDir("tiny-llama"), *windows), 1.0, 1e-5);
  EXPECT_NEAR(e.pruned_perplexity / PerplexityOfModel(dir / "out", *windows), 1.0, 1e-5);
  EXPECT_GT(e.pruned_perplexity, e.dense_perplexity * 1.05) << "half the weights gone costs something";
}

TEST(PruneModel, EvaluationErrorsNameTheData) {
  TempDir dir;
  PruneOptions options = Options(DataDir("tiny-gpt2"), dir / "out", 0.5);
  options.evaluation = EvaluationOptions{shears::testing::KjvSplitsDir() + "/test.txt", 4096, 0};
  auto too_long = PruneModel(options, {});
  EXPECT_NE(too_long.status().message().find("seq_len 4096 exceeds the model's 1024 positions"), std::string::npos)
      << too_long.status();
  options.evaluation = EvaluationOptions{dir / "missing.txt", 64, 0};
  EXPECT_EQ(PruneModel(options, {}).status().code(), absl::StatusCode::kNotFound);
}

// A calibrated method that records the Gram matrix of every linear's inputs, then prunes by
// magnitude so that later blocks must see the pruned earlier ones.
struct Recording {
  std::map<int, std::map<std::string, torch::Tensor>> grams;  // block -> linear -> XᵀX
};

class RecordingMethod final : public PruningMethod {
 public:
  explicit RecordingMethod(Recording* r) : r_(r) {}
  bool NeedsCalibration() const override { return true; }
  absl::Status PruneBlock(BlockToPrune& block) override {
    for (const auto& linear : block.linears) r_->grams[block.index][linear.name] = linear.inputs->gram().clone();
    return PruningMethod::PruneBlock(block);
  }
  absl::Status PruneLinear(LinearToPrune& linear, const SparsityTarget& target) override {
    return magnitude_.PruneLinear(linear, target);
  }

 private:
  Recording* r_;  // outlives the run, which owns the method
  MagnitudePruning magnitude_;
};

TEST(PruneModel, ACalibratedMethodSeesEachLinearsInputsFromThePrunedBlocksBefore) {
  TempDir dir;
  PruneOptions options = Options(DataDir("tiny-llama"), dir / "out", 0.5);
  options.calibration = CalibrationOptions{shears::testing::KjvSplitsDir() + "/test.txt", 4, 32, 3};
  Recording recording;
  const Recording* recorded = &recording;
  auto report = PruneModelWith(options, {}, std::make_unique<RecordingMethod>(&recording));
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectMagnitudePruned(DataDir("tiny-llama"), dir / "out", 0.5);

  auto model = ModelDir::Open(dir / "out");
  auto arch = MakeArchitecture((*model)->config());
  ASSERT_TRUE(model.ok() && arch.ok());
  for (int b = 0; b < 2; ++b) {
    std::set<std::string> expected;
    for (const auto& linear : (*arch)->BlockLinears(b)) expected.insert(linear.name.substr((*arch)->BlockPrefix(b).size()));
    std::set<std::string> observed;
    for (const auto& [name, gram] : recorded->grams.at(b)) observed.insert(name);
    EXPECT_EQ(observed, expected) << "block " << b;
  }
  for (const auto& layer : report->layers) {
    EXPECT_GT(layer.reconstruction_error, 0.0) << layer.name;
    EXPECT_LT(layer.reconstruction_error, 1.0) << layer.name;
  }

  // The same windows, recomputed independently through the written (pruned) model.
  auto tokenizer = LoadTokenizer(DataDir("tiny-llama"));
  auto ids = LoadTokenIds(options.calibration->path, tokenizer->get(), 2048);
  auto windows = CalibrationWindows(*ids, 4, 32, 3);
  ASSERT_TRUE(windows.ok());
  BlockRunner runner(**model, **arch, torch::kCPU);
  auto gram = [](const torch::Tensor& x) {
    auto rows = x.reshape({-1, x.size(-1)});
    return rows.t().matmul(rows);
  };
  auto h0 = runner.Embed(*windows);
  TensorMap block0 = runner.LoadBlock(0);
  const auto& eps = (*arch)->config().norm_eps;
  EXPECT_TRUE(torch::allclose(recorded->grams.at(0).at("self_attn.q_proj.weight"),
                              gram(RmsNorm(h0, block0.at("input_layernorm.weight"), eps)), 1e-4, 1e-3));
  auto h1 = runner.Run(block0, h0);
  TensorMap block1 = runner.LoadBlock(1);
  EXPECT_TRUE(torch::allclose(recorded->grams.at(1).at("self_attn.q_proj.weight"),
                              gram(RmsNorm(h1, block1.at("input_layernorm.weight"), eps)), 1e-4, 1e-3))
      << "block 1 saw the outputs of the pruned block 0";

  options.calibration.reset();
  Recording unused;
  EXPECT_EQ(PruneModelWith(options, {}, std::make_unique<RecordingMethod>(&unused)).status().code(),
            absl::StatusCode::kInvalidArgument)
      << "a calibrated method without calibration data";
}

TEST(PruneModel, StopsWhenCancelled) {
  TempDir dir;
  PruneObserver observer;
  observer.cancelled = [] { return true; };
  auto report = PruneModel(Options(DataDir("tiny-llama"), dir / "out", 0.5), observer);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kCancelled);
}

// Bad models fail with a message that says what is wrong and where.
class BrokenModel : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::copy(DataDir("tiny-llama"), dir_ / "m", fs::copy_options::recursive);
  }
  absl::Status Prune() { return PruneModel(Options(dir_ / "m", dir_ / "out", 0.5), {}).status(); }
  void EditConfig(const std::function<void(nlohmann::json&)>& edit) {
    auto config = nlohmann::json::parse(ReadFile(dir_ / "m/config.json").value());
    edit(config);
    ASSERT_TRUE(WriteFileAtomically(dir_ / "m/config.json", config.dump()).ok());
  }
  TempDir dir_;
};

TEST_F(BrokenModel, UnknownArchitecture) {
  EditConfig([](nlohmann::json& c) { c["model_type"] = "bert"; });
  absl::Status st = Prune();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("model_type 'bert' is not supported"), std::string::npos) << st;
}

TEST_F(BrokenModel, ConfigDisagreesWithWeights) {
  EditConfig([](nlohmann::json& c) { c["intermediate_size"] = 100; });
  absl::Status st = Prune();
  EXPECT_NE(st.message().find("tensor model.layers.0.mlp.gate_proj.weight has shape [176, 64], config.json implies "
                              "[100, 64]"),
            std::string::npos)
      << st;
}

TEST_F(BrokenModel, MissingTensor) {
  EditConfig([](nlohmann::json& c) { c["num_hidden_layers"] = 3; });
  absl::Status st = Prune();
  EXPECT_NE(st.message().find("tensor model.layers.2.input_layernorm.weight is missing"), std::string::npos) << st;
}

TEST_F(BrokenModel, TruncatedWeights) {
  const std::string path = dir_ / "m/model.safetensors";
  fs::resize_file(path, fs::file_size(path) - 100);
  absl::Status st = Prune();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("model.safetensors"), std::string::npos) << st;
  EXPECT_NE(st.message().find("outside the data section"), std::string::npos) << st;
}

TEST_F(BrokenModel, MissingConfig) {
  fs::remove(dir_ / "m/config.json");
  absl::Status st = Prune();
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find("config.json"), std::string::npos) << st;
}

TEST_F(BrokenModel, IndexNamesMissingShard) {
  ASSERT_TRUE(WriteFileAtomically(dir_ / "m/model.safetensors.index.json",
                                  R"({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}})")
                  .ok());
  absl::Status st = Prune();
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find("model-00002-of-00002.safetensors"), std::string::npos) << st;
}

TEST(PruneModel, MissingDirectoryIsNotFound) {
  TempDir dir;
  auto report = PruneModel(Options("/nonexistent/model", dir / "out", 0.5), {});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace shears::engine
