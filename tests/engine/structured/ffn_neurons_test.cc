// FFN-neuron pruning: smaller matrices, a rewritten config that the engine reads back, and the
// same function where no neuron goes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/support/model_builders.h"
#include "tests/support/process.h"
#include "tests/support/pruned_model_checks.h"
#include "tests/support/test_util.h"
#include "worker/engine/analysis/redundancy.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/prune_model.h"
#include "worker/engine/structured/neuron_scores.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::DataDir;
using shears::testing::KjvSplitsDir;
using shears::testing::StoredTensor;
using shears::testing::TempDir;
using shears::testing::TestSplitPerplexity;

PruneOptions Options(const std::string& model, const std::string& out, Method method, double fraction) {
  PruneOptions o;
  o.model_dir = model;
  o.output_dir = out;
  o.method = method;
  o.structure = Structure::kFfnNeurons;
  o.target_sparsity = fraction;
  o.evaluation = EvaluationOptions{KjvSplitsDir() + "/test.txt", 64, 4096};
  o.calibration = CalibrationOptions{KjvSplitsDir() + "/train.txt", 8, 64, 0};
  return o;
}

TEST(FfnNeurons, UniformMagnitudeRemovesTheWeakestNeuronsOfEveryBlock) {
  TempDir dir;
  const std::string in = DataDir("tiny-llama");
  auto report = PruneModel(Options(in, dir / "out", Method::kMagnitude, 0.25), {});
  ASSERT_TRUE(report.ok()) << report.status();
  auto config = nlohmann::json::parse(ReadFile(dir / "out/config.json").value());
  EXPECT_EQ(config["intermediate_size"], 132);  // 176 - round(0.25 * 176)
  EXPECT_FALSE(config.contains("shears_intermediate_sizes"));
  for (int b = 0; b < 2; ++b) {
    const std::string p = "model.layers." + std::to_string(b) + ".mlp.";
    auto up = StoredTensor(in, p + "up_proj.weight"), gate = StoredTensor(in, p + "gate_proj.weight");
    auto down = StoredTensor(in, p + "down_proj.weight");
    EXPECT_EQ(StoredTensor(dir / "out", p + "up_proj.weight").sizes(), (std::vector<int64_t>{132, 64}));
    EXPECT_EQ(StoredTensor(dir / "out", p + "gate_proj.weight").sizes(), (std::vector<int64_t>{132, 64}));
    EXPECT_EQ(StoredTensor(dir / "out", p + "down_proj.weight").sizes(), (std::vector<int64_t>{64, 132}));
    // The survivors are the neurons of largest norm, in their order, bit for bit.
    auto norms = (up.square().sum(1) + gate.square().sum(1) + down.square().sum(0)).sqrt();
    auto kept = std::get<1>(norms.sort(c10::optional<bool>(true), 0, /*descending=*/true)).slice(0, 0, 132);
    kept = std::get<0>(kept.sort());
    EXPECT_TRUE(torch::equal(StoredTensor(dir / "out", p + "up_proj.weight"), up.index_select(0, kept)));
    EXPECT_TRUE(torch::equal(StoredTensor(dir / "out", p + "down_proj.weight"), down.index_select(1, kept)));
  }
  EXPECT_EQ(StoredTensor(dir / "out", "model.layers.0.self_attn.q_proj.weight").sizes(), (std::vector<int64_t>{64, 64}));
  // Counted: 44 neurons of 3 × 64 weights in each of 2 blocks.
  EXPECT_EQ(report->parameters_before - report->parameters_after, 2 * 44 * 3 * 64);
  EXPECT_EQ(report->model_parameters_before - report->model_parameters_after, 2 * 44 * 3 * 64);
  EXPECT_NEAR(report->achieved_sparsity(), 0.25, 1e-9);
  // The pruned model reloads, and its perplexity is the one reported.
  EXPECT_DOUBLE_EQ(TestSplitPerplexity(dir / "out"), report->evaluation->pruned_perplexity);
  EXPECT_GT(report->evaluation->pruned_perplexity, report->evaluation->dense_perplexity);
  ASSERT_EQ(report->redundancy.size(), 2u);
}

TEST(FfnNeurons, GlobalAllocationRecordsPerBlockWidthsThatTheEngineReadsBack) {
  TempDir dir;
  auto options = Options(DataDir("tiny-gpt2"), dir / "out", Method::kMagnitude, 0.5);
  options.allocation = Allocation::kGlobal;
  auto report = PruneModel(options, {});
  ASSERT_TRUE(report.ok()) << report.status();
  auto config = nlohmann::json::parse(ReadFile(dir / "out/config.json").value());
  ASSERT_TRUE(config.contains("shears_intermediate_sizes")) << config.dump();
  auto widths = config["shears_intermediate_sizes"].get<std::vector<int64_t>>();
  ASSERT_EQ(widths.size(), 2u);
  EXPECT_EQ(widths[0] + widths[1], 256);  // half of 2 × 256
  EXPECT_EQ(config["n_inner"], std::max(widths[0], widths[1]));
  for (int b = 0; b < 2; ++b) {
    // GPT-2's Conv1D stores [in, out]: c_fc loses columns, c_proj rows, the bias entries.
    const std::string p = "transformer.h." + std::to_string(b) + ".mlp.";
    EXPECT_EQ(StoredTensor(dir / "out", p + "c_fc.weight").sizes(), (std::vector<int64_t>{64, widths[b]}));
    EXPECT_EQ(StoredTensor(dir / "out", p + "c_fc.bias").sizes(), (std::vector<int64_t>{widths[b]}));
    EXPECT_EQ(StoredTensor(dir / "out", p + "c_proj.weight").sizes(), (std::vector<int64_t>{widths[b], 64}));
  }
  EXPECT_DOUBLE_EQ(TestSplitPerplexity(dir / "out"), report->evaluation->pruned_perplexity);
  // Pruned again, uniformly at zero: the per-block widths survive a second pass.
  auto again = Options(dir / "out", dir / "again", Method::kMagnitude, 0.0);
  auto second = PruneModel(again, {});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(nlohmann::json::parse(ReadFile(dir / "again/config.json").value())["shears_intermediate_sizes"],
            config["shears_intermediate_sizes"]);
}

TEST(FfnNeurons, RemovingNoNeuronReproducesTheDenseModel) {
  TempDir dir;
  auto report = PruneModel(Options(DataDir("tiny-llama"), dir / "out", Method::kRandom, 0.0), {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(ReadFile(dir / "out/model.safetensors").value(), ReadFile(DataDir("tiny-llama") + "/model.safetensors").value());
  EXPECT_EQ(report->evaluation->pruned_perplexity, report->evaluation->dense_perplexity);
}

TEST(FfnNeurons, RandomIsSeededAndOptLosesBiasEntriesToo) {
  TempDir dir;
  shears::testing::WriteSyntheticOpt(dir / "opt", 2, 32, 64, 2048, 32, true);
  fs::copy_file(DataDir("tiny-llama") + "/tokenizer.json", dir / "opt/tokenizer.json");
  auto options = Options(dir / "opt", dir / "unused", Method::kRandom, 0.5);
  options.seed = 1;
  shears::testing::ExpectReproducibleBySeed(options, dir.path());
  EXPECT_EQ(StoredTensor(dir / "a", "model.decoder.layers.1.fc1.bias").sizes(), (std::vector<int64_t>{32}));
  EXPECT_EQ(StoredTensor(dir / "a", "model.decoder.layers.1.fc2.weight").sizes(), (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(nlohmann::json::parse(ReadFile(dir / "a/config.json").value())["ffn_dim"], 32);
}

TEST(FfnRedundancy, IsMeasuredOnTheDenseAndThePrunedModelWhenAsked) {
  TempDir dir;
  auto options = Options(DataDir("tiny-llama"), dir / "out", Method::kMagnitude, 0.5);
  auto without = PruneModel(options, {});
  ASSERT_TRUE(without.ok()) << without.status();
  ASSERT_EQ(without->redundancy.size(), 2u);
  EXPECT_TRUE(without->redundancy[0].ffns.empty()) << "Block Influence only, unless asked";
  EXPECT_EQ(without->redundancy[0].blocks.size(), 2u);
  options.neuron_measures = true;
  auto report = PruneModel(options, {});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->redundancy.size(), 2u);
  for (const auto& r : report->redundancy) {
    ASSERT_EQ(r.ffns.size(), 2u) << r.model;
    const int64_t width = r.model == "dense" ? 176 : 88;
    for (const auto& ffn : r.ffns) {
      EXPECT_EQ(ffn.neurons, width);
      EXPECT_EQ(static_cast<int64_t>(ffn.max_cosine.values.size()), width);
      EXPECT_GT(ffn.effective_rank, 1.0);
      EXPECT_LE(ffn.effective_rank, double(width));
      EXPECT_GT(ffn.max_cosine.p90, ffn.max_cosine.p50 - 1e-12);
      EXPECT_LE(ffn.max_cosine.max, 1.0 + 1e-9);
      EXPECT_EQ(static_cast<int64_t>(ffn.uniqueness.values.size()), width);
      EXPECT_GE(ffn.uniqueness.p50, 0.0);
      EXPECT_LE(ffn.uniqueness.max, 1.0);
      EXPECT_EQ(static_cast<int64_t>(ffn.sensitivity.values.size()), width);
      EXPECT_GT(ffn.sensitivity.max, 0.0) << "some neuron matters to the loss";
    }
  }
}

TEST(FfnNeurons, AlignedRemovalKeepsTheNearestMultipleWithinTheWidth) {
  EXPECT_EQ(AlignedRemoval(11008, 2752, 256), 11008 - 8192);  // Llama-2-7B at 25%: 8256 kept -> 32 x 256
  EXPECT_EQ(AlignedRemoval(14336, 4301, 128), 14336 - 9984);  // Llama-3-8B at 30%: 10035 -> 78 x 128
  EXPECT_EQ(AlignedRemoval(48, 47, 16), 32) << "never below one multiple";
  EXPECT_EQ(AlignedRemoval(50, 0, 16), 2) << "never above the largest multiple within the width";
  EXPECT_EQ(AlignedRemoval(176, 53, 16), 48);
  EXPECT_EQ(AlignedRemoval(176, 53, 1), 53);
  EXPECT_EQ(AlignedRemoval(176, 53, 0), 53);
  EXPECT_EQ(AlignedRemoval(0, 0, 64), 0) << "a block without FFN";
}

// Widths aligned for tensor-parallel and quantized kernels: every kept width a multiple, the
// achieved sparsity what the rounding gave, the model reloading with the reported perplexity.
TEST(FfnNeurons, WidthMultipleRoundsEveryKeptWidthAndReportsWhatItGave) {
  TempDir dir;
  auto uniform = Options(DataDir("tiny-llama"), dir / "uniform", Method::kMagnitude, 0.3);
  uniform.width_multiple = 16;
  auto report = PruneModel(uniform, {});
  ASSERT_TRUE(report.ok()) << report.status();
  // 176 - round(0.3 x 176) = 123 kept, rounded to 128.
  EXPECT_EQ(nlohmann::json::parse(ReadFile(dir / "uniform/config.json").value())["intermediate_size"], 128);
  EXPECT_EQ(StoredTensor(dir / "uniform", "model.layers.1.mlp.down_proj.weight").size(1), 128);
  EXPECT_DOUBLE_EQ(report->achieved_sparsity(), 48.0 / 176.0);
  EXPECT_DOUBLE_EQ(TestSplitPerplexity(dir / "uniform"), report->evaluation->pruned_perplexity);

  auto global = Options(DataDir("tiny-gpt2"), dir / "global", Method::kMagnitude, 0.45);
  global.allocation = Allocation::kGlobal;
  global.width_multiple = 32;
  report = PruneModel(global, {});
  ASSERT_TRUE(report.ok()) << report.status();
  const auto widths = shears::testing::WrittenFfnWidths(dir / "global");
  ASSERT_EQ(widths.size(), 2u);
  for (int64_t w : widths) EXPECT_EQ(w % 32, 0) << w;
  EXPECT_DOUBLE_EQ(report->achieved_sparsity(), 1.0 - double(widths[0] + widths[1]) / 512.0);
  EXPECT_LE(std::abs(report->achieved_sparsity() - 0.45), 32.0 / 512.0) << "within one multiple a block";
  EXPECT_DOUBLE_EQ(TestSplitPerplexity(dir / "global"), report->evaluation->pruned_perplexity);

  auto wide = Options(DataDir("tiny-llama"), dir / "wide", Method::kMagnitude, 0.3);
  wide.width_multiple = 256;
  auto refused = PruneModel(wide, {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(), "width_multiple: 256 is wider than block 0's FFN (176 neurons)");
}

TEST(FfnNeurons, RefusesTargetsThatEmptyABlockOrMethodsThatCannotScoreNeurons) {
  TempDir dir;
  auto all = PruneModel(Options(DataDir("tiny-llama"), dir / "out", Method::kMagnitude, 0.999), {});
  EXPECT_EQ(all.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(all.status().message().find("would remove every FFN neuron of block 0"), std::string::npos) << all.status();
  auto wanda = PruneModel(Options(DataDir("tiny-llama"), dir / "out", Method::kWanda, 0.25), {});
  EXPECT_EQ(wanda.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace shears::engine
