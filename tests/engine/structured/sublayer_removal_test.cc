// Sublayer removal: attention and MLP sublayers ranked by their influence on the residual
// stream (or last-first, or seeded at random) go until their parameters come nearest the target,
// written as no_op sublayers in the Nemotron-NAS layout that the engine reloads and evaluates.
#include "worker/engine/structured/sublayer_removal.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "common/files.h"
#include "tests/support/model_builders.h"
#include "tests/support/test_util.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/prune_model.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::TempDir;

constexpr int kBlocks = 8;

class SublayerRemoval : public ::testing::Test {
 protected:
  void SetUp() override {
    shears::testing::WriteSyntheticLlama(dir_ / "model", kBlocks, 32, 64);
    torch::manual_seed(3);
    auto ids = torch::randint(0, 256, {4096}, torch::TensorOptions().dtype(torch::kInt64));
    std::string bytes(4096 * 2, '\0');
    auto u16 = ids.to(torch::kInt16);
    std::memcpy(bytes.data(), u16.data_ptr(), bytes.size());
    ASSERT_TRUE(WriteFileAtomically(dir_ / "ids.bin", bytes).ok());
  }

  PruneOptions Options(Method method, double fraction, const std::string& out = "out") {
    PruneOptions o;
    o.model_dir = dir_ / "model";
    o.output_dir = dir_ / out;
    o.method = method;
    o.structure = Structure::kSublayers;
    o.target_sparsity = fraction;
    o.calibration = CalibrationOptions{dir_ / "ids.bin", 8, 32, 0};
    o.evaluation = EvaluationOptions{dir_ / "ids.bin", 32, 2048};
    return o;
  }

  // Parameters of one sublayer of the input model (its linears and its norm), and of all blocks.
  int64_t Parameters(int block, bool attention) {
    auto model = ModelDir::Open(dir_ / "model");
    int64_t n = 0;
    const std::string prefix = "model.layers." + std::to_string(block) + ".";
    for (const auto& info : (*model)->files()[0]->tensors()) {
      if (!absl::StartsWith(info.name, prefix)) continue;
      const std::string local = info.name.substr(prefix.size());
      const bool in_attention = absl::StartsWith(local, "self_attn.") || absl::StartsWith(local, "input_layernorm.");
      if (in_attention == attention) n += info.numel();
    }
    return n;
  }
  int64_t BlockParameters() { return Parameters(0, true) + Parameters(0, false); }

  // Zeroes what the named sublayers add to the residual stream, making each the identity.
  void Silence(const std::vector<std::string>& weights) {
    auto model = ModelDir::Open(dir_ / "model");
    ASSERT_TRUE(model.ok());
    NamedTensors tensors;
    for (const auto& info : (*model)->files()[0]->tensors()) {
      auto t = LoadTensor(*(*model)->files()[0], info);
      if (std::find(weights.begin(), weights.end(), info.name) != weights.end()) t.zero_();
      tensors.emplace_back(info.name, t);
    }
    model->reset();
    ASSERT_TRUE(WriteSafetensors(dir_ / "model/model.safetensors", tensors).ok());
  }

  nlohmann::json Written(const std::string& out = "out") {
    return nlohmann::json::parse(ReadFile(dir_ / (out + "/config.json")).value());
  }

  TempDir dir_;
};

TEST_F(SublayerRemoval, SublayersThatChangeNothingGoFirstAndTheOutputComputesTheSame) {
  Silence({"model.layers.2.self_attn.o_proj.weight", "model.layers.5.mlp.down_proj.weight"});
  const int64_t attention = Parameters(2, true), mlp = Parameters(5, false);
  auto report = PruneModel(Options(Method::kBlockInfluence, double(attention + mlp) / (kBlocks * BlockParameters())), {});
  ASSERT_TRUE(report.ok()) << report.status();

  const auto& dense = report->redundancy.at(0).blocks;
  ASSERT_EQ(dense.size(), size_t{kBlocks});
  EXPECT_NEAR(*dense[2].attention_influence, 0.0, 1e-9);
  EXPECT_NEAR(*dense[5].mlp_influence, 0.0, 1e-9);
  for (int b = 0; b < kBlocks; ++b) {
    if (b != 2) EXPECT_GT(*dense[b].attention_influence, 1e-4) << b;
    if (b != 5) EXPECT_GT(*dense[b].mlp_influence, 1e-4) << b;
  }
  // Both influences are 0 up to rounding, so either may come first.
  auto removed = report->removed_sublayers;
  ASSERT_EQ(removed.size(), 2u);
  std::sort(removed.begin(), removed.end(), [](const auto& a, const auto& b) { return a.block < b.block; });
  EXPECT_EQ(removed[0].block, 2);
  EXPECT_EQ(removed[0].sublayer, "attention");
  EXPECT_EQ(removed[0].parameters, attention);
  EXPECT_EQ(removed[1].block, 5);
  EXPECT_EQ(removed[1].sublayer, "mlp");
  EXPECT_EQ(removed[1].parameters, mlp);
  EXPECT_TRUE(report->removed_blocks.empty());
  EXPECT_EQ(report->parameters_before, kBlocks * BlockParameters());
  EXPECT_EQ(report->parameters_before - report->parameters_after, attention + mlp);
  EXPECT_EQ(report->model_parameters_before - report->model_parameters_after, attention + mlp);

  const auto config = Written();
  EXPECT_EQ(config["architectures"], nlohmann::json::array({"DeciLMForCausalLM"}));
  EXPECT_EQ(config["num_hidden_layers"], kBlocks);
  EXPECT_EQ(config["block_configs"][2]["attention"]["no_op"], true);
  EXPECT_EQ(config["block_configs"][2]["ffn"]["no_op"], false);
  EXPECT_EQ(config["block_configs"][5]["ffn"]["no_op"], true);
  EXPECT_EQ(config["block_configs"][5]["attention"]["no_op"], false);
  auto out = ModelDir::Open(dir_ / "out");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)->Find("model.layers.2.self_attn.q_proj.weight"), nullptr);
  EXPECT_EQ((*out)->Find("model.layers.2.input_layernorm.weight"), nullptr);
  EXPECT_NE((*out)->Find("model.layers.2.mlp.up_proj.weight"), nullptr);
  EXPECT_EQ((*out)->Find("model.layers.5.mlp.down_proj.weight"), nullptr);
  EXPECT_EQ((*out)->Find("model.layers.5.post_attention_layernorm.weight"), nullptr);
  // The removed sublayers were the identity: the written model computes what the input did.
  EXPECT_NEAR(report->evaluation->pruned_perplexity, report->evaluation->dense_perplexity,
              1e-5 * report->evaluation->dense_perplexity);
  // The pruned model's measures have no influence for the sublayers it lacks.
  const auto& pruned = report->redundancy.at(1).blocks;
  EXPECT_FALSE(pruned[2].attention_influence.has_value());
  EXPECT_TRUE(pruned[2].mlp_influence.has_value());
}

TEST_F(SublayerRemoval, TheFirstAttentionStaysAheadOfEveryMlp) {
  // Block 0's attention does nothing, but without it block 0's MLP would run before any
  // attention, which vLLM's DeciLM cannot: it is passed over.
  Silence({"model.layers.0.self_attn.o_proj.weight"});
  auto report = PruneModel(Options(Method::kBlockInfluence, double(Parameters(0, true)) / (kBlocks * BlockParameters())), {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_NEAR(*report->redundancy[0].blocks[0].attention_influence, 0.0, 1e-9);
  for (const auto& r : report->removed_sublayers) EXPECT_FALSE(r.block == 0 && r.sublayer == "attention");
  EXPECT_EQ(Written()["block_configs"][0]["attention"]["no_op"], false);
}

TEST_F(SublayerRemoval, ABlockLeftEmptyIsRemovedAndWholeBlocksGiveTheFamilysOwnConfig) {
  // The last block's share: its MLP, then its attention, from the end.
  auto report = PruneModel(Options(Method::kLastBlocks, 1.0 / kBlocks), {});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->removed_sublayers.size(), 2u);
  EXPECT_EQ(report->removed_sublayers[0].sublayer, "mlp");
  EXPECT_EQ(report->removed_sublayers[1].sublayer, "attention");
  EXPECT_EQ(report->removed_blocks, std::vector<int>{7});
  EXPECT_DOUBLE_EQ(report->achieved_sparsity(), 1.0 / kBlocks);
  const auto config = Written();
  EXPECT_EQ(config["model_type"], "llama");
  EXPECT_EQ(config["num_hidden_layers"], kBlocks - 1);
  EXPECT_FALSE(config.contains("block_configs"));

  // The same model as ShortGPT's last-block baseline writes.
  PruneOptions blocks = Options(Method::kLastBlocks, 1.0 / kBlocks, "blocks");
  blocks.structure = Structure::kLayers;
  auto layers = PruneModel(blocks, {});
  ASSERT_TRUE(layers.ok()) << layers.status();
  EXPECT_EQ(ReadFile(dir_ / "out/model.safetensors").value(), ReadFile(dir_ / "blocks/model.safetensors").value());
  EXPECT_EQ(report->evaluation->pruned_perplexity, layers->evaluation->pruned_perplexity);
}

TEST_F(SublayerRemoval, RandomIsSeededAndTheAchievedShareIsTheNearestTheSublayersAllow) {
  auto options = Options(Method::kRandom, 0.3, "r1");
  options.seed = 3;
  auto a = PruneModel(options, {});
  options.output_dir = dir_ / "r2";
  auto b = PruneModel(options, {});
  options.output_dir = dir_ / "r3";
  options.seed = 4;
  auto c = PruneModel(options, {});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status() << b.status() << c.status();
  auto blocks_of = [](const PruneReport& r) {
    std::vector<std::pair<int, std::string>> out;
    for (const auto& s : r.removed_sublayers) out.emplace_back(s.block, s.sublayer);
    return out;
  };
  EXPECT_EQ(blocks_of(*a), blocks_of(*b));
  EXPECT_NE(blocks_of(*a), blocks_of(*c));
  int64_t removed = 0;
  for (const auto& s : a->removed_sublayers) removed += s.parameters;
  EXPECT_DOUBLE_EQ(a->achieved_sparsity(), double(removed) / double(a->parameters_before));
  // One more or one fewer sublayer would not come nearer: within half the largest one.
  EXPECT_LE(std::abs(a->achieved_sparsity() - 0.3), 0.5 * double(Parameters(0, false)) / a->parameters_before);
}

TEST_F(SublayerRemoval, AttentionOnlyOrMlpOnlyTakeOneKind) {
  for (Sublayers kind : {Sublayers::kAttention, Sublayers::kMlp}) {
    const bool attention = kind == Sublayers::kAttention;
    auto options = Options(Method::kBlockInfluence, 0.25, attention ? "attention" : "mlp");
    options.sublayers = kind;
    auto report = PruneModel(options, {});
    ASSERT_TRUE(report.ok()) << report.status();
    // A quarter of the blocks' parameters is about five attention sublayers or three MLPs.
    ASSERT_GE(report->removed_sublayers.size(), 2u);
    for (const auto& r : report->removed_sublayers) EXPECT_EQ(r.sublayer, attention ? "attention" : "mlp");
    // Ranked by influence: each removed one is at most as influential as every kept one of its kind.
    double most_removed = 0.0, least_kept = 1e9;
    const auto& dense = report->redundancy[0].blocks;
    for (int b = 0; b < kBlocks; ++b) {
      const double influence = attention ? *dense[b].attention_influence : *dense[b].mlp_influence;
      const bool removed = std::any_of(report->removed_sublayers.begin(), report->removed_sublayers.end(),
                                       [&](const RemovedSublayer& r) { return r.block == b; });
      if (removed) most_removed = std::max(most_removed, influence);
      if (!removed && !(attention && b == 0)) least_kept = std::min(least_kept, influence);
    }
    EXPECT_LE(most_removed, least_kept) << (attention ? "attention" : "mlp");
    EXPECT_EQ(Written(attention ? "attention" : "mlp")["architectures"], nlohmann::json::array({"DeciLMForCausalLM"}));
  }
}

TEST_F(SublayerRemoval, RefusesFamiliesTheLayoutCannotExpressAndBlockInfluenceWithoutCalibration) {
  auto options = Options(Method::kBlockInfluence, 0.2);
  options.calibration.reset();
  auto uncalibrated = PruneModel(options, {});
  EXPECT_EQ(uncalibrated.status().code(), absl::StatusCode::kInvalidArgument);
  TempDir other;
  shears::testing::WriteSyntheticOpt(other / "opt", 2, 32, 64, 256, 32, true);
  options = Options(Method::kLastBlocks, 0.2);
  options.model_dir = other / "opt";
  auto opt = PruneModel(options, {});
  EXPECT_EQ(opt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(opt.status().message().find("structure: STRUCTURE_SUBLAYERS writes the Nemotron-NAS layout"),
            std::string::npos)
      << opt.status();
  EXPECT_FALSE(fs::exists(dir_ / "out/config.json"));
}

}  // namespace
}  // namespace shears::engine
