// The training loop the fine-tuning methods and shears-train use.
#include "worker/engine/training/trainer.h"

#include <gtest/gtest.h>

#include "common/files.h"
#include "tests/support/process.h"
#include "tests/support/test_util.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace shears::engine {
namespace {

using shears::testing::DataDir;
using shears::testing::TempDir;

TEST(LearningRate, WarmsUpLinearlyThenFollowsTheCosineToItsFloor) {
  TrainOptions o;
  o.steps = 1000;
  o.warmup_steps = 100;
  o.learning_rate = 1e-3;
  o.min_learning_rate_ratio = 0.1;
  EXPECT_DOUBLE_EQ(LearningRate(o, 0), 1e-5);
  EXPECT_DOUBLE_EQ(LearningRate(o, 49), 5e-4);
  EXPECT_DOUBLE_EQ(LearningRate(o, 99), 1e-3);
  EXPECT_NEAR(LearningRate(o, 550), 1e-4 + 0.9e-3 * 0.5, 1e-12) << "half way down the cosine";
  EXPECT_NEAR(LearningRate(o, 999), 1e-4, 1e-7);
  for (int s = 100; s < 999; ++s) EXPECT_GE(LearningRate(o, s), LearningRate(o, s + 1));
}

struct ArchCase {
  std::string name;
  nlohmann::json config;
};

class Training : public ::testing::TestWithParam<ArchCase> {};

TEST_P(Training, LowersTheLossAndSavesAModelTheEngineReadsBack) {
  TempDir dir;
  auto tokenizer = LoadTokenizer(DataDir("tiny-llama"));
  ASSERT_TRUE(tokenizer.ok());
  auto text = ReadFile(shears::testing::KjvSplitsDir() + "/train.txt");
  ASSERT_TRUE(text.ok());
  ASSERT_TRUE(WriteFileAtomically(dir / "train.txt", text->substr(0, 200000)).ok());
  auto ids = LoadTokenIds(dir / "train.txt", tokenizer->get(), 2048);
  ASSERT_TRUE(ids.ok());

  auto arch = MakeArchitecture(GetParam().config);
  ASSERT_TRUE(arch.ok()) << arch.status();
  torch::set_num_threads(2);
  ModelWeights weights = InitWeights(**arch, 0, torch::kCPU);
  TrainOptions options;
  options.steps = 120;
  options.batch_size = 8;
  options.seq_len = 64;
  options.warmup_steps = 20;
  std::vector<double> losses;
  ASSERT_TRUE(Train(**arch, weights, *ids, options, [&](const TrainStep& s) { losses.push_back(s.loss); }).ok());
  ASSERT_EQ(losses.size(), 120u);
  EXPECT_NEAR(losses.front(), std::log(2048.0), 0.5) << "an untrained model guesses uniformly";
  double last = 0;
  for (size_t i = losses.size() - 20; i < losses.size(); ++i) last += losses[i] / 20;
  EXPECT_LT(last, losses.front() - 1.5) << "training lowered the loss";

  // Saved and read back block by block, the model computes what it computed in memory.
  ASSERT_TRUE(SaveModel(**arch, weights, GetParam().config, dir / "model").ok());
  auto model = ModelDir::Open(dir / "model");
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_TRUE((*arch)->CheckWeights(**model).ok());
  BlockRunner runner(**model, **arch, torch::kCPU);
  auto sample = ids->slice(0, 0, 128).view({2, 64});
  auto hidden = runner.Embed(sample);
  for (int b = 0; b < (*arch)->num_blocks(); ++b) hidden = runner.Run(b, runner.LoadBlock(b), hidden);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(runner.Logits(hidden), Forward(**arch, weights, sample), 1e-5, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(
    Architectures, Training,
    ::testing::Values(ArchCase{"Llama", {{"model_type", "llama"}, {"vocab_size", 2048}, {"hidden_size", 32},
                                         {"intermediate_size", 64}, {"num_hidden_layers", 1},
                                         {"num_attention_heads", 2}, {"num_key_value_heads", 1}}},
                      ArchCase{"Gpt2", {{"model_type", "gpt2"}, {"vocab_size", 2048}, {"n_embd", 32}, {"n_layer", 1},
                                        {"n_head", 2}, {"n_positions", 128}}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace shears::engine
