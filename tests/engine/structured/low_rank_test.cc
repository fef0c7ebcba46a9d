// Low-rank pruning: activation-aware SVD with allocated ranks, FLOP's gates under a Lagrangian,
// factors stored with their ranks in config.json and read back by the engine.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/support/process.h"
#include "tests/support/pruned_model_checks.h"
#include "tests/support/test_util.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/methods/linear_inputs.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/prune_model.h"
#include "worker/engine/structured/flop.h"
#include "worker/engine/structured/low_rank.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::DataDir;
using shears::testing::KjvSplitsDir;
using shears::testing::StoredTensor;
using shears::testing::TempDir;
using shears::testing::TestSplitPerplexity;

PruneOptions Options(const std::string& model, const std::string& out, double fraction) {
  PruneOptions o;
  o.model_dir = DataDir(model);
  o.output_dir = out;
  o.method = Method::kLowRank;
  o.structure = Structure::kRank;
  o.target_sparsity = fraction;
  o.evaluation = EvaluationOptions{KjvSplitsDir() + "/test.txt", 64, 4096};
  o.calibration = CalibrationOptions{KjvSplitsDir() + "/train.txt", 16, 64, 0};
  return o;
}

Spectrum Flat(int64_t rank, int64_t rows, int64_t columns) {
  auto energy = torch::ones({rank}, torch::kFloat64) / double(rank);
  return {torch::cat({torch::zeros({1}, torch::kFloat64), energy.cumsum(0)}).neg().add(1.0), rows, columns};
}

TEST(AllocateRanks, MeetsTheBudgetTakingTheCheapestErrorFirst) {
  // Matrix 0 has all its energy in one component; matrix 1 spreads it over eight.
  Spectrum peaked{torch::tensor({1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}, torch::kFloat64), 8, 8};
  std::vector<Spectrum> spectra = {peaked, Flat(8, 8, 8)};
  auto ranks = AllocateRanks(spectra, 96);
  ASSERT_TRUE(ranks.ok()) << ranks.status();
  EXPECT_EQ((*ranks)[0], 1) << "one component holds everything";
  EXPECT_EQ((*ranks)[1], 0) << "the other stays whole: 16 + 64 parameters fit 96";
  auto all = AllocateRanks(spectra, 128);
  EXPECT_EQ(*all, (std::vector<int64_t>{0, 0})) << "the whole model fits: nothing factored";
  auto tight = AllocateRanks(spectra, 32);
  ASSERT_TRUE(tight.ok());
  EXPECT_EQ(*tight, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(AllocateRanks(spectra, 31).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LowRankSvd, NoRankRemovedWritesTheInputWeights) {
  TempDir dir;
  auto report = PruneModel(Options("tiny-llama", dir / "out", 0.0), {});
  ASSERT_TRUE(report.ok()) << report.status();
  auto config = nlohmann::json::parse(ReadFile(dir / "out/config.json").value());
  EXPECT_FALSE(config.contains("shears_low_rank"));
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"}) {
    EXPECT_TRUE(torch::equal(StoredTensor(dir / "out", name), StoredTensor(DataDir("tiny-llama"), name))) << name;
  }
  EXPECT_EQ(report->evaluation->pruned_perplexity, report->evaluation->dense_perplexity);
}

TEST(LowRankSvd, StoresFactorsWithTheirRanksAndTheEngineReadsThemBack) {
  TempDir dir;
  auto report = PruneModel(Options("tiny-llama", dir / "out", 0.3), {});
  ASSERT_TRUE(report.ok()) << report.status();
  auto config = nlohmann::json::parse(ReadFile(dir / "out/config.json").value());
  ASSERT_TRUE(config.contains("shears_low_rank"));
  ASSERT_FALSE(config["shears_low_rank"].empty());
  for (const auto& [name, rank] : config["shears_low_rank"].items()) {
    const std::string module = name.substr(0, name.rfind('.') + 1);
    auto u = StoredTensor(dir / "out", module + "low_rank_u");
    auto v = StoredTensor(dir / "out", module + "low_rank_v");
    auto dense = StoredTensor(DataDir("tiny-llama"), name);
    EXPECT_EQ(u.sizes(), (std::vector<int64_t>{dense.size(0), rank.get<int64_t>()})) << name;
    EXPECT_EQ(v.sizes(), (std::vector<int64_t>{rank.get<int64_t>(), dense.size(1)})) << name;
    EXPECT_LT(rank.get<int64_t>() * (dense.size(0) + dense.size(1)), dense.numel()) << "factors are smaller";
    auto model = ModelDir::Open(dir / "out");
    EXPECT_EQ((*model)->Find(name), nullptr) << "the dense weight is gone";
  }
  // Parameters counted from the files, within one matrix row of the target.
  const double removed = 1.0 - double(report->parameters_after) / double(report->parameters_before);
  EXPECT_NEAR(removed, 0.3, 0.01);
  EXPECT_EQ(report->model_parameters_before - report->model_parameters_after,
            report->parameters_before - report->parameters_after);
  EXPECT_NEAR(TestSplitPerplexity(dir / "out"), report->evaluation->pruned_perplexity,
              1e-9 * report->evaluation->pruned_perplexity);
  EXPECT_GT(report->evaluation->pruned_perplexity, report->evaluation->dense_perplexity);
}

TEST(LowRankSvd, ReportedErrorIsTheErrorOnTheCalibrationActivations) {
  // The whitened SVD drops components by their share of ‖W X‖²: the reported error of a
  // block-0 linear equals ‖(W − UV) X‖² / ‖W X‖² measured directly on the same inputs.
  TempDir dir;
  auto options = Options("tiny-llama", dir / "out", 0.5);
  auto report = PruneModel(options, {});
  ASSERT_TRUE(report.ok()) << report.status();
  auto model = ModelDir::Open(DataDir("tiny-llama"));
  auto arch = MakeArchitecture((*model)->config());
  auto tokenizer = LoadTokenizer(DataDir("tiny-llama"));
  auto ids = LoadTokenIds(options.calibration->path, tokenizer->get(), (*arch)->config().vocab);
  auto windows = *CalibrationWindows(*ids, 16, 64, 0);
  BlockRunner runner(**model, **arch, torch::kCPU);
  BlockInputs inputs([](const std::string&) { return InputsToGather{}; });
  const LinearInputs observe = [&](const std::string& name, const torch::Tensor& x) { inputs.Observe(name, x); };
  runner.Run(0, runner.LoadBlock(0), runner.Embed(windows), &observe);
  auto config = nlohmann::json::parse(ReadFile(dir / "out/config.json").value());
  int checked = 0;
  for (const auto& layer : report->layers) {
    if (layer.block != 0 || !config["shears_low_rank"].contains(layer.name)) continue;
    const std::string module = layer.name.substr(0, layer.name.rfind('.') + 1);
    auto product =
        StoredTensor(dir / "out", module + "low_rank_u").matmul(StoredTensor(dir / "out", module + "low_rank_v"));
    const std::string relative = layer.name.substr(std::string("model.layers.0.").size());
    const double measured =
        ReconstructionError(StoredTensor(DataDir("tiny-llama"), layer.name), product, inputs.Find(relative)->gram());
    EXPECT_NEAR(layer.reconstruction_error, measured, 1e-3 * measured + 1e-6) << layer.name;
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(LowRankSvd, DenseOutputMultipliesTheFactorsOut) {
  TempDir dir;
  auto factored = PruneModel(Options("tiny-llama", dir / "factored", 0.3), {});
  auto options = Options("tiny-llama", dir / "dense", 0.3);
  options.low_rank.dense_output = true;
  auto dense = PruneModel(options, {});
  ASSERT_TRUE(factored.ok() && dense.ok());
  auto config = nlohmann::json::parse(ReadFile(dir / "dense/config.json").value());
  EXPECT_FALSE(config.contains("shears_low_rank"));
  EXPECT_EQ(StoredTensor(dir / "dense", "model.layers.0.mlp.up_proj.weight").sizes(), (std::vector<int64_t>{176, 64}));
  EXPECT_NEAR(dense->evaluation->pruned_perplexity, factored->evaluation->pruned_perplexity,
              1e-4 * factored->evaluation->pruned_perplexity);
}

TEST(LowRankSvd, FactorsGpt2sTransposedConv1DWeights) {
  TempDir dir;
  auto report = PruneModel(Options("tiny-gpt2", dir / "out", 0.3), {});
  ASSERT_TRUE(report.ok()) << report.status();
  auto config = nlohmann::json::parse(ReadFile(dir / "out/config.json").value());
  ASSERT_TRUE(config.contains("shears_low_rank"));
  EXPECT_NEAR(TestSplitPerplexity(dir / "out"), report->evaluation->pruned_perplexity,
              1e-9 * report->evaluation->pruned_perplexity);
  EXPECT_LT(report->evaluation->pruned_perplexity, 4 * report->evaluation->dense_perplexity);
}

TEST(LowRankSvd, RefusesWithoutCalibrationAndUnreachableTargets) {
  TempDir dir;
  auto options = Options("tiny-llama", dir / "out", 0.3);
  options.calibration.reset();
  auto missing = PruneModel(options, {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("calibration"), std::string::npos);
  auto all = PruneModel(Options("tiny-llama", dir / "out", 0.999), {});
  EXPECT_EQ(all.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(all.status().message().find("target_sparsity"), std::string::npos) << all.status();
}

TEST(Flop, GatesAndLagrangianReachTheTargetSizeWithinOnePercent) {
  for (double fraction : {0.3, 0.5}) {
    TempDir dir;
    auto options = Options("tiny-llama", dir / "out", fraction);
    options.low_rank.algorithm = LowRankAlgorithm::kFlop;
    options.fine_tune = FineTuneOptions{KjvSplitsDir() + "/train.txt", 200, 1e-3, 4, 64, false, -1.0};
    auto model = ModelDir::Open(options.model_dir);
    auto arch = MakeArchitecture((*model)->config());
    auto tokenizer = LoadTokenizer(options.model_dir);
    auto ids = LoadTokenIds(options.fine_tune->path, tokenizer->get(), (*arch)->config().vocab);
    auto flop = TrainFlop(options, {}, **model, **arch, torch::kCPU, *ids);
    ASSERT_TRUE(flop.ok()) << flop.status();
    EXPECT_NEAR(flop->expected_size, 1.0 - fraction, 0.01) << "expected size under the gates";
    EXPECT_NEAR(flop->final_size, 1.0 - fraction, 0.01) << "size with the closed components dropped";
  }
}

TEST(Flop, AJobWritesFactorsTheEngineEvaluates) {
  TempDir dir;
  auto options = Options("tiny-llama", dir / "out", 0.5);
  options.low_rank.algorithm = LowRankAlgorithm::kFlop;
  options.fine_tune = FineTuneOptions{KjvSplitsDir() + "/train.txt", 200, 1e-3, 4, 64, false, -1.0};
  auto report = PruneModel(options, {});
  ASSERT_TRUE(report.ok()) << report.status();
  // Matrices whose factors would not be smaller are written whole, so the files hold at most the
  // gates' size.
  EXPECT_GE(1.0 - double(report->parameters_after) / double(report->parameters_before), 0.49);
  EXPECT_NEAR(TestSplitPerplexity(dir / "out"), report->evaluation->pruned_perplexity,
              1e-9 * report->evaluation->pruned_perplexity);
  options.fine_tune.reset();
  EXPECT_EQ(PruneModel(options, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace shears::engine
