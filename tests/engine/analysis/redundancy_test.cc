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
  auto ffn = MeasureFfn(4, a);
  EXPECT_EQ(ffn.block, 4);
  EXPECT_EQ(ffn.neurons, 3);
  ASSERT_EQ(ffn.max_cosine.values.size(), 3u);
  // Single precision: to one in a million.
  EXPECT_NEAR(ffn.max_cosine.values[0], 1.0, 1e-6);
  EXPECT_NEAR(ffn.max_cosine.values[1], 1.0, 1e-6);
  EXPECT_NEAR(ffn.max_cosine.values[2], 0.0, 1e-6);
  EXPECT_NEAR(ffn.mean_pairwise_cosine, 1.0 / 3.0, 1e-6);  // pairs (0,1), (0,2), (1,2): 1, 0, 0
  EXPECT_NEAR(ffn.max_cosine.max, 1.0, 1e-6);
  // A duplicate is fully reproduced by its twin; the orthogonal neuron by nothing.
  ASSERT_EQ(ffn.uniqueness.values.size(), 3u);
  EXPECT_NEAR(ffn.uniqueness.values[0], 0.0, 1e-6);
  EXPECT_NEAR(ffn.uniqueness.values[1], 0.0, 1e-6);
  EXPECT_NEAR(ffn.uniqueness.values[2], 1.0, 1e-6);
  // Singular values √2, 1, 0.
  const double p = std::sqrt(2.0) / (1 + std::sqrt(2.0)), q = 1 - p;
  EXPECT_NEAR(ffn.effective_rank, std::exp(-(p * std::log(p) + q * std::log(q))), 1e-6);
}

// Wider than the block of cosines taken at a time, the largest cosines are still each neuron's.
TEST(FfnRedundancy, MaxCosineOfAWideFfnIsEachNeuronsLargest) {
  torch::manual_seed(2);
  auto a = torch::randn({16, 5000});
  a.select(1, 4999).copy_(-3 * a.select(1, 7));  // opposite: cosine -1, not a duplicate
  a.select(1, 4000).copy_(0.5 * a.select(1, 11));
  const auto ffn = MeasureFfn(0, a);
  const auto unit = a / a.norm(2, {0});
  const auto cosine = unit.t().matmul(unit).fill_diagonal_(-2.0);
  const auto want = std::get<0>(cosine.max(1));
  ASSERT_EQ(ffn.max_cosine.values.size(), 5000u);
  double worst = 0;
  for (int64_t i = 0; i < 5000; ++i) worst = std::max(worst, std::abs(ffn.max_cosine.values[i] - want[i].item<double>()));
  EXPECT_LT(worst, 1e-5);
  EXPECT_NEAR(ffn.max_cosine.values[4000], 1.0, 1e-5);
  EXPECT_NEAR(ffn.max_cosine.values[11], 1.0, 1e-5);
  EXPECT_NEAR(ffn.mean_pairwise_cosine,
              (cosine.sum().item<double>() + 2.0 * 5000) / (5000.0 * 4999.0), 1e-6);
}

// With fewer tokens than neurons every neuron is a combination of the others on those tokens;
// uniqueness is then measured against the evenly spaced sample of half as many neurons as tokens
// (here every 8th of 256, on 64 tokens).
TEST(FfnRedundancy, WithFewerTokensThanNeuronsUniquenessIsAgainstASampleOfNeurons) {
  torch::manual_seed(3);
  const auto basis = std::get<0>(torch::linalg_qr(torch::randn({64, 64}, torch::kFloat64)));
  auto a = torch::zeros({64, 256}, torch::kFloat64);
  for (int j = 0; j < 32; ++j) a.select(1, 8 * j).copy_(basis.select(1, j) + 0.1 * basis.select(1, (j + 1) % 32));
  a.select(1, 1).copy_(2 * a.select(1, 0) - a.select(1, 8));  // in the sample's span
  a.select(1, 2).copy_(basis.select(1, 40));                   // outside it
  a.select(1, 3).copy_(basis.select(1, 5) + basis.select(1, 41));  // half in it
  const auto ffn = MeasureFfn(0, a);
  const auto& u = ffn.uniqueness.values;
  EXPECT_NEAR(u[1], 0.0, 1e-4);
  EXPECT_NEAR(u[2], 1.0, 1e-4);
  EXPECT_NEAR(u[3], 0.5, 1e-4);
  EXPECT_EQ(u[5], 0.0) << "a neuron that never fires";
  // A sampled neuron against the others of the sample: each is one basis vector plus a tenth of
  // the next, so some of it always escapes the others.
  EXPECT_GT(u[8], 0.0);
  EXPECT_LT(u[8], 1.0);
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
  const auto report = MeasureRedundancy(runner, windows, "dense", /*neurons=*/true);
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
