// FFN neurons pruned while fine-tuning by magnitude, random, movement or GUM: the cubic schedule,
// GUM's uniqueness term, and jobs whose written files match their reports.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/support/process.h"
#include "tests/support/pruned_model_checks.h"
#include "tests/support/test_util.h"
#include "worker/engine/analysis/redundancy.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/prune_model.h"
#include "worker/engine/structured/neuron_fine_tune.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"
#include "worker/engine/training/fine_tune.h"
#include "worker/engine/training/trainer.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::DataDir;
using shears::testing::KjvSplitsDir;
using shears::testing::StoredTensor;
using shears::testing::TempDir;
using shears::testing::TestSplitPerplexity;

PruneOptions Options(const std::string& out, Method method, double fraction, int64_t steps) {
  PruneOptions o;
  o.model_dir = DataDir("tiny-llama");
  o.output_dir = out;
  o.method = method;
  o.structure = Structure::kFfnNeurons;
  o.target_sparsity = fraction;
  o.evaluation = EvaluationOptions{KjvSplitsDir() + "/test.txt", 64, 4096};
  o.calibration = CalibrationOptions{KjvSplitsDir() + "/train.txt", 8, 64, 0};
  o.fine_tune = FineTuneOptions{KjvSplitsDir() + "/train.txt", steps, 1e-3, 4, 64, false, -1.0};
  return o;
}

std::vector<int64_t> Shape(const std::string& dir, const std::string& name) {
  auto model = ModelDir::Open(dir);
  const auto* at = (*model)->Find(name);
  EXPECT_NE(at, nullptr) << name;
  return at == nullptr ? std::vector<int64_t>{} : at->info->shape;
}

TEST(CubicSparsity, HoldsOffThenRisesAlongACubicToTheTargetAt70Percent) {
  EXPECT_EQ(CubicSparsity(0, 100, 0.5), 0.0);
  EXPECT_EQ(CubicSparsity(10, 100, 0.5), 0.0);
  EXPECT_NEAR(CubicSparsity(40, 100, 0.5), 0.5 * (1 - 0.125), 1e-12) << "half way: 1 - (1/2)^3";
  EXPECT_EQ(CubicSparsity(70, 100, 0.5), 0.5);
  EXPECT_EQ(CubicSparsity(100, 100, 0.5), 0.5);
  for (int s = 0; s < 100; ++s) EXPECT_LE(CubicSparsity(s, 100, 0.5), CubicSparsity(s + 1, 100, 0.5));
}

TEST(UniquenessPenalty, IsTheMeanSquaredCosineOverPairsOfKeptNeurons) {
  // Neurons 0 and 1 identical, 2 orthogonal to both, 3 a copy of 2.
  auto a = torch::tensor({{1.0, 1.0, 0.0, 0.0}, {0.0, 0.0, 2.0, 2.0}}, torch::kFloat32);
  auto all = torch::ones({4});
  // Pairs (ordered, off the diagonal): 12; squared cosine 1 for (0,1),(1,0),(2,3),(3,2).
  EXPECT_NEAR(UniquenessPenalty(a, all).item<double>(), 4.0 / 12.0, 1e-6);
  EXPECT_NEAR(UniquenessPenalty(a, torch::tensor({1.0f, 0.0f, 1.0f, 0.0f})).item<double>(), 0.0, 1e-6)
      << "with one of each twin masked, the survivors are orthogonal";
}

TEST(NeuronFineTune, EveryScoreShrinksTheBlocksAndTheFilesMatchTheReport) {
  TempDir dir;
  for (Method method : {Method::kMagnitude, Method::kRandom, Method::kMovement}) {
    const std::string out = dir / ("out" + std::to_string(static_cast<int>(method)));
    std::vector<std::string> stages;
    PruneObserver observer;
    observer.on_progress = [&](const std::string& stage, double, const std::string&) { stages.push_back(stage); };
    auto report = PruneModel(Options(out, method, 0.25, 12), observer);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_NE(std::find(stages.begin(), stages.end(), "fine-tuning"), stages.end());
    for (int b = 0; b < 2; ++b) {
      const std::string prefix = "model.layers." + std::to_string(b) + ".mlp.";
      EXPECT_EQ(Shape(out, prefix + "gate_proj.weight"), (std::vector<int64_t>{132, 64}));
      EXPECT_EQ(Shape(out, prefix + "up_proj.weight"), (std::vector<int64_t>{132, 64}));
      EXPECT_EQ(Shape(out, prefix + "down_proj.weight"), (std::vector<int64_t>{64, 132}));
    }
    auto config = nlohmann::json::parse(ReadFile(out + "/config.json").value());
    EXPECT_EQ(config["intermediate_size"], 132);
    ASSERT_TRUE(report->evaluation.has_value());
    EXPECT_NEAR(TestSplitPerplexity(out), report->evaluation->pruned_perplexity,
                1e-9 * report->evaluation->pruned_perplexity);
  }
}

TEST(NeuronFineTune, GumSelectsAcrossBlocksAndReachesTheTargetOverall) {
  TempDir dir;
  auto report = PruneModel(Options(dir / "out", Method::kGum, 0.5, 12), {});
  ASSERT_TRUE(report.ok()) << report.status();
  const int64_t a = Shape(dir / "out", "model.layers.0.mlp.up_proj.weight")[0];
  const int64_t b = Shape(dir / "out", "model.layers.1.mlp.up_proj.weight")[0];
  EXPECT_EQ(a + b, 176) << "half of the 352 neurons, wherever they were";
  auto config = nlohmann::json::parse(ReadFile(dir / "out/config.json").value());
  EXPECT_EQ(config["model_type"], a != b ? "nemotron-nas" : "llama") << "blocks of different widths: the Nemotron-NAS layout";
  EXPECT_EQ(shears::testing::WrittenFfnWidths(dir / "out"), (std::vector<int64_t>{a, b}));
  EXPECT_NEAR(TestSplitPerplexity(dir / "out"), report->evaluation->pruned_perplexity, 1e-6);
}

TEST(NeuronFineTune, GumsTermMakesTheSurvivingNeuronsLessAlike) {
  // The same job with and without the uniqueness term: the term must lower the mean squared
  // cosine between the pruned model's neurons (measured on the calibration windows).
  TempDir dir;
  auto mean_cosine = [&](double weight, const std::string& out) {
    auto options = Options(out, Method::kGum, 0.25, 30);
    options.fine_tune->uniqueness_weight = weight;
    options.neuron_measures = true;
    auto report = PruneModel(options, {});
    EXPECT_TRUE(report.ok()) << report.status();
    double sum = 0;
    for (const auto& ffn : report->redundancy.back().ffns) sum += ffn.max_cosine.mean;
    return sum / report->redundancy.back().ffns.size();
  };
  const double without = mean_cosine(0.0, dir / "plain");
  const double with = mean_cosine(20.0, dir / "unique");
  EXPECT_LT(with, without - 0.01) << "max cosine " << with << " with the term, " << without << " without";
}

TEST(NeuronFineTune, RefusesMovementWithoutFineTuningData) {
  TempDir dir;
  auto options = Options(dir / "out", Method::kMovement, 0.25, 12);
  options.fine_tune.reset();
  auto report = PruneModel(options, {});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(report.status().message().find("fine_tune.dataset_uri"), std::string::npos) << report.status();
}

}  // namespace
}  // namespace shears::engine
