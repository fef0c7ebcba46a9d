// The redundancy measures: Block Influence, the neuron measures of an FFN on hand-made activations,
// and sensitivity against a central difference of the loss.
#include "worker/engine/analysis/redundancy.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "tests/support/process.h"
#include "tests/support/test_util.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"
#include "worker/engine/training/trainer.h"

namespace shears::engine {
namespace {

using shears::testing::DataDir;
using shears::testing::KjvSplitsDir;

TEST(BlockInfluence, OfABlockThatChangesNothingIsZero) {
  auto h = torch::randn({2, 5, 16});
  EXPECT_NEAR(BlockInfluence(h, h), 0.0, 1e-12);
  EXPECT_NEAR(BlockInfluence(h, 3.0 * h), 0.0, 1e-12) << "cosine ignores scale";
  EXPECT_NEAR(BlockInfluence(h, -h), 2.0, 1e-12);
}

TEST(FfnRedundancy, DuplicatesHaveCosineOneAndCollapseTheEffectiveRank) {
  // Activations [tokens, 3]: neurons 0 and 1 identical, neuron 2 orthogonal to them.
  auto a = torch::tensor({{1.0, 1.0, 0.0}, {0.0, 0.0, 1.0}, {0.0, 0.0, 0.0}}, torch::kFloat64);
  auto ffn = MeasureFfn(4, a.t().matmul(a));
  EXPECT_EQ(ffn.block, 4);
  EXPECT_EQ(ffn.neurons, 3);
  ASSERT_EQ(ffn.max_cosine.values.size(), 3u);
  EXPECT_NEAR(ffn.max_cosine.values[0], 1.0, 1e-12);
  EXPECT_NEAR(ffn.max_cosine.values[1], 1.0, 1e-12);
  EXPECT_NEAR(ffn.max_cosine.values[2], 0.0, 1e-12);
  EXPECT_NEAR(ffn.mean_pairwise_cosine, 1.0 / 3.0, 1e-12);  // pairs (0,1), (0,2), (1,2): 1, 0, 0
  EXPECT_NEAR(ffn.max_cosine.max, 1.0, 1e-12);
  // A duplicate is fully reproduced by its twin; the orthogonal neuron by nothing.
  ASSERT_EQ(ffn.uniqueness.values.size(), 3u);
  EXPECT_NEAR(ffn.uniqueness.values[0], 0.0, 1e-6);
  EXPECT_NEAR(ffn.uniqueness.values[1], 0.0, 1e-6);
  EXPECT_NEAR(ffn.uniqueness.values[2], 1.0, 1e-6);
  // Singular values √2, 1, 0.
  const double p = std::sqrt(2.0) / (1 + std::sqrt(2.0)), q = 1 - p;
  EXPECT_NEAR(ffn.effective_rank, std::exp(-(p * std::log(p) + q * std::log(q))), 1e-9);
}

TEST(NeuronSensitivity, IsTheLossSlopeOfScalingTheNeuron) {
  // d L / d c at c = 1 for the neuron's output scaled by c equals Σ_t a_t ∂L/∂a_t: check the
  // reported value against a central difference through the whole model.
  const std::string dir = DataDir("tiny-llama");
  auto model = ModelDir::Open(dir);
  auto arch = MakeArchitecture((*model)->config());
  auto tokenizer = LoadTokenizer(dir);
  auto ids = LoadTokenIds(KjvSplitsDir() + "/train.txt", tokenizer->get(), (*arch)->config().vocab);
  auto windows = *CalibrationWindows(*ids, 4, 64, 0);
  BlockRunner runner(**model, **arch, torch::kCPU);
  const auto report = MeasureRedundancy(runner, windows, "dense");
  const auto& sensitivity = report.ffns[1].sensitivity.values;
  const int64_t neuron = std::max_element(sensitivity.begin(), sensitivity.end()) - sensitivity.begin();

  auto weights = LoadWeights(**model, **arch, torch::kCPU);
  torch::NoGradGuard no_grad;
  auto loss = [&](double scale) {
    auto scaled = weights;
    auto& down = scaled.blocks[1]["mlp.down_proj.weight"];
    down = down.clone();
    down.select(1, neuron).mul_(scale);
    auto logits = Forward(**arch, scaled, windows);
    return NextTokenCrossEntropy(logits.slice(1, 0, -1), windows).item<double>();
  };
  const double h = 1e-2;
  const double slope = (loss(1 + h) - loss(1 - h)) / (2 * h);
  EXPECT_GT(sensitivity[neuron], 0.0);
  EXPECT_NEAR(std::abs(slope), sensitivity[neuron], 0.05 * sensitivity[neuron] + 1e-6);
}

}  // namespace
}  // namespace shears::engine
