// The neuron measures at real FFN width: on an 8-block model of FFN width 16,384 with 8 windows
// of 128 tokens they finish (before, a Wanda job on this model sat in a double-precision
// eigendecomposition of a 16,384² Gram matrix for over 18 minutes at 16 GB). ctest's timeout for
// this test is 120 s; it prints what the measures took, on two threads as a worker on two cores.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <iostream>

#include "tests/support/model_builders.h"
#include "tests/support/test_util.h"
#include "worker/engine/analysis/redundancy.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"

namespace shears::engine {
namespace {

TEST(RedundancyAtScale, NeuronMeasuresOfSixteenThousandNeuronFfnsFinish) {
  shears::testing::TempDir dir;
  const std::string path = dir / "wide";
  shears::testing::WriteRandomModel(path,
                                    {{"model_type", "llama"}, {"vocab_size", 2048}, {"hidden_size", 128},
                                     {"intermediate_size", 16384}, {"num_hidden_layers", 8},
                                     {"num_attention_heads", 4}, {"num_key_value_heads", 4},
                                     {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-5}},
                                    5);
  auto model = ModelDir::Open(path);
  ASSERT_TRUE(model.ok()) << model.status();
  auto arch = MakeArchitecture((*model)->config());
  ASSERT_TRUE(arch.ok()) << arch.status();
  torch::set_num_threads(2);
  torch::manual_seed(8);
  const auto windows = torch::randint(2048, {8, 128}, torch::kInt64);
  BlockRunner runner(**model, **arch, torch::kCPU);
  const auto start = std::chrono::steady_clock::now();
  const RedundancyReport report = MeasureRedundancy(runner, windows, "dense", /*neurons=*/true);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(report.ffns.size(), 8u);
  for (const auto& ffn : report.ffns) {
    EXPECT_EQ(ffn.neurons, 16384);
    EXPECT_EQ(ffn.max_cosine.values.size(), 16384u);
    EXPECT_GT(ffn.max_cosine.max, ffn.max_cosine.p50);
    EXPECT_GT(ffn.uniqueness.mean, 0.0);
    EXPECT_LE(ffn.uniqueness.max, 1.0);
    EXPECT_GT(ffn.sensitivity.max, 0.0);
    EXPECT_GT(ffn.effective_rank, 1.0);
    EXPECT_LE(ffn.effective_rank, 256.0) << "on the first 256 tokens";
  }
  const auto plain = std::chrono::steady_clock::now();
  EXPECT_TRUE(MeasureRedundancy(runner, windows, "dense", /*neurons=*/false).ffns.empty());
  const double block_influence = std::chrono::duration<double>(std::chrono::steady_clock::now() - plain).count();
  std::cout << "8 blocks of 16,384 neurons, 1,024 tokens: Block Influence and the neuron measures " << seconds
            << " s; Block Influence alone " << block_influence << " s" << std::endl;
}

}  // namespace
}  // namespace shears::engine
