// The accuracy-predictor search as a job: it prunes the model at the chosen per-module sparsities,
// exactly on the uniform budget, the same way for the same seed.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "common/files.h"
#include "tests/support/process.h"
#include "tests/support/pruned_model_checks.h"
#include "tests/support/test_util.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/methods/masks.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/prune_model.h"
#include "worker/engine/run/staging.h"
#include "worker/engine/search/predictor_search.h"
#include "worker/engine/allocation/search_space.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::DataDir;
using shears::testing::KjvSplitsDir;
using shears::testing::TempDir;

std::unique_ptr<Architecture> FixtureArchitecture() {
  auto model = ModelDir::Open(DataDir("tiny-llama"));
  return std::move(MakeArchitecture((*model)->config()).value());
}

class PredictorSearchTest : public ::testing::Test {
 protected:
  PruneOptions Options(const std::string& out, Method base, double sparsity) {
    PruneOptions o;
    o.model_dir = DataDir("tiny-llama");
    o.output_dir = out;
    o.method = Method::kPredictorSearch;
    o.target_sparsity = sparsity;
    o.calibration = CalibrationOptions{KjvSplitsDir() + "/train.txt", 16, 64, 1};
    o.evaluation = EvaluationOptions{KjvSplitsDir() + "/test.txt", 64, 4096};
    o.search.base_method = base;
    o.search.measured_configurations = 40;
    o.search.search_budget = 400;
    o.seed = 11;
    return o;
  }

  TempDir dir_;
};

TEST_F(PredictorSearchTest, ASearchPrunesTheBudgetExactlyAtTheChosenSparsitiesAndRepeatsForTheSameSeed) {
  std::vector<std::string> messages;
  PruneObserver observer;
  observer.on_progress = [&](const std::string& stage, double, const std::string& message) {
    if (stage == "searching") messages.push_back(message);
  };
  const PruneOptions options = Options(dir_ / "out", Method::kWanda, 0.5);
  auto report = PruneModel(options, observer);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->search.has_value());
  const SearchReport& search = *report->search;

  auto arch = FixtureArchitecture();
  auto space = SearchSpace::For(*arch, 0.5, kDefaultMaxDeviation).value();
  EXPECT_EQ(report->parameters_before - report->parameters_after, space.budget())
      << "the pruned model removes exactly the uniform configuration's weights";
  EXPECT_EQ(search.measured_configurations, 40);
  EXPECT_EQ(search.training_configurations, 17) << "70% of the 24 sampled first";
  EXPECT_GT(search.searched_configurations, 300);
  EXPECT_LE(search.searched_configurations, 400);
  EXPECT_GT(search.validation_rank_correlation, 0.5) << "the predictor ranks configurations it did not see";
  ASSERT_TRUE(search.owl_score.has_value()) << "OWL's allocation is among the configurations measured";
  EXPECT_LE(search.searched_score, search.uniform_score);
  EXPECT_LE(search.searched_score, *search.owl_score);
  ASSERT_EQ(search.sparsity.size(), 2u);
  for (const auto& block : search.sparsity) {
    for (double s : {block.attention, block.mlp}) {
      EXPECT_GE(s, 0.5 - kDefaultMaxDeviation - 1e-3);
      EXPECT_LE(s, 0.5 + kDefaultMaxDeviation + 1e-3);
    }
  }
  // Every module's weights in the files are pruned as reported.
  for (const auto& module : space.modules()) {
    int64_t zeros = 0;
    for (const auto& name : module.linears) zeros += (testing::StoredTensor(dir_ / "out", name) == 0).sum().item<int64_t>();
    const auto& block = search.sparsity[module.block];
    EXPECT_NEAR(double(zeros) / double(module.size), module.mlp ? block.mlp : block.attention, 1e-9);
  }
  ASSERT_TRUE(search.uniform_perplexity.has_value());
  ASSERT_TRUE(report->evaluation.has_value());
  EXPECT_GT(*search.uniform_perplexity, report->evaluation->dense_perplexity);
  EXPECT_NEAR(testing::TestSplitPerplexity(dir_ / "out"), report->evaluation->pruned_perplexity,
              1e-3 * report->evaluation->pruned_perplexity)
      << "the evaluation is of the model written";
  EXPECT_FALSE(fs::exists(StagingDir(options, "uniform"))) << "the uniform baseline's files are removed";
  ASSERT_GE(messages.size(), 40u + 2u);
  EXPECT_EQ(messages[1].rfind("configuration 1/40: held-out perplexity ", 0), 0u) << messages[1];
  EXPECT_EQ(messages.back().rfind("configuration 40/40: held-out perplexity ", 0), 0u) << messages.back();
  EXPECT_TRUE(std::any_of(messages.begin(), messages.end(), [](const std::string& m) {
    return m.rfind("round 2/2, generation ", 0) == 0;
  })) << "the search proposes in two rounds";

  auto again = PruneModel(Options(dir_ / "again", Method::kWanda, 0.5), {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->search->validation_rank_correlation, search.validation_rank_correlation);
  EXPECT_EQ(again->search->searched_score, search.searched_score);
  for (size_t b = 0; b < search.sparsity.size(); ++b) {
    EXPECT_EQ(again->search->sparsity[b].attention, search.sparsity[b].attention);
    EXPECT_EQ(again->search->sparsity[b].mlp, search.sparsity[b].mlp);
  }
  EXPECT_EQ(again->evaluation->pruned_perplexity, report->evaluation->pruned_perplexity);
}

TEST_F(PredictorSearchTest, SparseGptAsTheBaseMethodMeetsTheBudgetToo) {
  PruneOptions options = Options(dir_ / "sgpt", Method::kSparseGpt, 0.7);
  options.evaluation.reset();
  auto report = PruneModel(options, {});
  ASSERT_TRUE(report.ok()) << report.status();
  auto space = SearchSpace::For(*FixtureArchitecture(), 0.7, kDefaultMaxDeviation).value();
  EXPECT_EQ(report->parameters_before - report->parameters_after, space.budget());
  EXPECT_FALSE(report->search->uniform_perplexity.has_value());
  EXPECT_GT(report->search->validation_rank_correlation, 0.5);
}

TEST_F(PredictorSearchTest, FfnNeuronSharesPerBlockRemoveExactlyTheUniformNumberOfNeurons) {
  PruneOptions options = Options(dir_ / "ffn", Method::kMagnitude, 0.25);
  options.structure = Structure::kFfnNeurons;
  auto report = PruneModel(options, {});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->search.has_value());
  const auto& search = *report->search;
  const std::vector<int64_t> widths = testing::WrittenFfnWidths(dir_ / "ffn");
  ASSERT_EQ(widths.size(), 2u);
  EXPECT_EQ(widths[0] + widths[1], 2 * 176 - 2 * PrunedCount(176, 0.25)) << "the uniform number of neurons removed";
  for (int b = 0; b < 2; ++b) {
    EXPECT_EQ(search.sparsity[b].attention, 0.0);
    EXPECT_NEAR(search.sparsity[b].mlp, 1.0 - double(widths[b]) / 176, 1e-9) << "block " << b;
    EXPECT_EQ(testing::StoredTensor(dir_ / "ffn", "model.layers." + std::to_string(b) + ".mlp.down_proj.weight").size(1),
              widths[b]);
  }
  EXPECT_LE(search.searched_score, search.uniform_score);
  EXPECT_FALSE(search.owl_score.has_value()) << "OWL allocates weights, not neurons";
  EXPECT_NEAR(testing::TestSplitPerplexity(dir_ / "ffn"), report->evaluation->pruned_perplexity,
              1e-3 * report->evaluation->pruned_perplexity);
  PruneOptions wanda = Options(dir_ / "x", Method::kWanda, 0.25);
  wanda.structure = Structure::kFfnNeurons;
  auto st = PruneModel(wanda, {}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().rfind("search.base_method: ", 0), 0u) << st.message();
}

TEST_F(PredictorSearchTest, BudgetsTooSmallAndBaseMethodsWithoutPerLayerRatiosAreRefused) {
  PruneOptions small = Options(dir_ / "x", Method::kWanda, 0.5);
  small.search.measured_configurations = 6;
  auto st = PruneModel(small, {}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().rfind("search.measured_configurations: ", 0), 0u) << st.message();
  PruneOptions sparsellm = Options(dir_ / "x", Method::kSparseLlm, 0.5);
  st = PruneModel(sparsellm, {}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().rfind("search.base_method: ", 0), 0u) << st.message();
  PruneOptions uncalibrated = Options(dir_ / "x", Method::kWanda, 0.5);
  uncalibrated.calibration.reset();
  EXPECT_EQ(PruneModel(uncalibrated, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace shears::engine
