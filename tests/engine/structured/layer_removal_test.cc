// Layer removal (ShortGPT's Block Influence, and the last-k and random-k baselines): the output is
// a smaller model of the same architecture that the engine reloads and evaluates.
#include "worker/engine/structured/layer_removal.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/support/model_builders.h"
#include "tests/support/process.h"
#include "tests/support/test_util.h"
#include "worker/engine/analysis/redundancy.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/prune_model.h"
#include "worker/engine/text/dataset.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::DataDir;
using shears::testing::KjvSplitsDir;
using shears::testing::TempDir;

constexpr int kBlocks = 8;

// An 8-block synthetic llama (vocab 256) and calibration/evaluation ids for it.
class LayerRemoval : public ::testing::Test {
 protected:
  void SetUp() override {
    shears::testing::WriteSyntheticLlama(dir_ / "model", kBlocks, 32, 64);
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
    o.structure = Structure::kLayers;
    o.target_sparsity = fraction;
    o.calibration = CalibrationOptions{dir_ / "ids.bin", 8, 32, 0};
    o.evaluation = EvaluationOptions{dir_ / "ids.bin", 32, 2048};
    return o;
  }

  TempDir dir_;
};

TEST_F(LayerRemoval, AnIdentityBlockHasNoInfluenceAndGoesFirst) {
  // Zeroing what a llama block adds to the residual stream makes it the identity.
  auto model = ModelDir::Open(dir_ / "model");
  ASSERT_TRUE(model.ok());
  NamedTensors tensors;
  for (const auto& info : (*model)->files()[0]->tensors()) {
    auto t = LoadTensor(*(*model)->files()[0], info);
    if (info.name == "model.layers.5.self_attn.o_proj.weight" || info.name == "model.layers.5.mlp.down_proj.weight") {
      t.zero_();
    }
    tensors.emplace_back(info.name, t);
  }
  model->reset();
  ASSERT_TRUE(WriteSafetensors(dir_ / "model/model.safetensors", tensors).ok());

  auto report = PruneModel(Options(Method::kBlockInfluence, 1.0 / kBlocks), {});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->redundancy.size(), 2u);
  EXPECT_EQ(report->redundancy[0].model, "dense");
  ASSERT_EQ(report->redundancy[0].blocks.size(), 8u);
  EXPECT_NEAR(report->redundancy[0].blocks[5].block_influence, 0.0, 1e-9);
  for (int b : {0, 1, 2, 3, 4, 6, 7}) EXPECT_GT(report->redundancy[0].blocks[b].block_influence, 1e-4) << b;
  EXPECT_EQ(report->removed_blocks, std::vector<int>{5});
  EXPECT_EQ(report->redundancy[1].blocks.size(), 7u);
  // Removing the identity changes nothing the model computes.
  EXPECT_NEAR(report->evaluation->pruned_perplexity, report->evaluation->dense_perplexity,
              1e-4 * report->evaluation->dense_perplexity);
}

TEST_F(LayerRemoval, WritesASmallerModelThatReloadsWithTheReportedPerplexity) {
  PruneObserver observer;
  std::vector<RedundancyReport> streamed;
  observer.on_redundancy = [&](const RedundancyReport& r) { streamed.push_back(r); };
  auto report = PruneModel(Options(Method::kBlockInfluence, 0.25), observer);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->removed_blocks.size(), 2u);
  EXPECT_EQ(streamed.size(), 2u);

  auto config = nlohmann::json::parse(ReadFile(dir_ / "out/config.json").value());
  EXPECT_EQ(config["num_hidden_layers"], 6);
  auto in = ModelDir::Open(dir_ / "model");
  auto out = ModelDir::Open(dir_ / "out");
  ASSERT_TRUE(in.ok() && out.ok());
  // Kept blocks are renumbered in order, bit for bit; removed ones are gone.
  int kept = 0;
  for (int b = 0; b < kBlocks; ++b) {
    const bool removed = std::count(report->removed_blocks.begin(), report->removed_blocks.end(), b) > 0;
    if (removed) continue;
    for (const char* t : {"self_attn.q_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"}) {
      const auto* a = (*in)->Find("model.layers." + std::to_string(b) + "." + t);
      const auto* c = (*out)->Find("model.layers." + std::to_string(kept) + "." + t);
      ASSERT_NE(c, nullptr) << kept << t;
      auto x = a->file->Data(*a->info), y = c->file->Data(*c->info);
      EXPECT_TRUE(std::equal(x.begin(), x.end(), y.begin(), y.end())) << b << " -> " << kept << " " << t;
    }
    ++kept;
  }
  EXPECT_EQ((*out)->Find("model.layers.6.self_attn.q_proj.weight"), nullptr);
  EXPECT_EQ(report->parameters_after * 4, report->parameters_before * 3);
  EXPECT_EQ(report->model_parameters_before - report->model_parameters_after,
            report->parameters_before - report->parameters_after);
  EXPECT_DOUBLE_EQ(report->achieved_sparsity(), 0.25);

  auto arch = MakeArchitecture((*out)->config());
  ASSERT_TRUE(arch.ok());
  EXPECT_EQ((*arch)->num_blocks(), 6);
  auto windows = EvaluationWindows(*LoadTokenIds(dir_ / "ids.bin", nullptr, 256), 32, 2048);
  BlockRunner runner(**out, **arch, torch::kCPU);
  EXPECT_DOUBLE_EQ(Perplexity(runner, *windows), report->evaluation->pruned_perplexity);
}

TEST_F(LayerRemoval, RemovingNoBlockReproducesTheDenseModel) {
  auto report = PruneModel(Options(Method::kBlockInfluence, 0.0), {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->removed_blocks.empty());
  EXPECT_EQ(ReadFile(dir_ / "out/model.safetensors").value(), ReadFile(dir_ / "model/model.safetensors").value());
  EXPECT_EQ(report->evaluation->pruned_perplexity, report->evaluation->dense_perplexity);
}

TEST_F(LayerRemoval, BaselinesTakeTheLastOrSeededRandomBlocks) {
  auto last = PruneModel(Options(Method::kLastBlocks, 0.25), {});
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->removed_blocks, (std::vector<int>{6, 7}));
  auto options = Options(Method::kRandom, 0.5, "r1");
  options.seed = 3;
  auto a = PruneModel(options, {});
  options.output_dir = dir_ / "r2";
  auto b = PruneModel(options, {});
  options.output_dir = dir_ / "r3";
  options.seed = 4;
  auto c = PruneModel(options, {});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->removed_blocks.size(), 4u);
  EXPECT_EQ(a->removed_blocks, b->removed_blocks);
  EXPECT_NE(a->removed_blocks, c->removed_blocks);
}

TEST_F(LayerRemoval, RefusesToRemoveEveryBlockOrToGuessWithoutCalibration) {
  auto all = PruneModel(Options(Method::kLastBlocks, 0.95), {});
  EXPECT_EQ(all.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(all.status().message().find("target_sparsity: 0.95 removes 8 of the 8 blocks and would leave none"),
            std::string::npos)
      << all.status();
  auto options = Options(Method::kBlockInfluence, 0.25);
  options.calibration.reset();
  EXPECT_EQ(PruneModel(options, {}).status().code(), absl::StatusCode::kInvalidArgument);
  auto wrong = Options(Method::kWanda, 0.25);
  EXPECT_EQ(PruneModel(wrong, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LayerRemovalLayouts, ShardedGpt2KeepsItsShardsAndRewritesNLayer) {
  TempDir dir;
  shears::testing::RewriteModel(DataDir("tiny-gpt2"), dir / "m", torch::kBFloat16, 2);
  fs::copy_file(DataDir("tiny-gpt2") + "/tokenizer.json", dir / "m/tokenizer.json");
  PruneOptions o;
  o.model_dir = dir / "m";
  o.output_dir = dir / "out";
  o.method = Method::kLastBlocks;
  o.structure = Structure::kLayers;
  o.target_sparsity = 0.5;
  o.evaluation = EvaluationOptions{KjvSplitsDir() + "/test.txt", 64, 4096};
  auto report = PruneModel(o, {});
  ASSERT_TRUE(report.ok()) << report.status();
  auto config = nlohmann::json::parse(ReadFile(dir / "out/config.json").value());
  EXPECT_EQ(config["n_layer"], 1);
  auto index = nlohmann::json::parse(ReadFile(dir / "out/model.safetensors.index.json").value());
  EXPECT_FALSE(index["weight_map"].contains("transformer.h.1.attn.c_attn.weight"));
  EXPECT_TRUE(index["weight_map"].contains("transformer.h.0.attn.c_attn.weight"));
  auto out = ModelDir::Open(dir / "out");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE((*out)->sharded());
  EXPECT_EQ((*out)->Find("transformer.wte.weight")->info->dtype, DType::kBF16);
  EXPECT_GT(report->evaluation->pruned_perplexity, report->evaluation->dense_perplexity);
}

}  // namespace
}  // namespace shears::engine
