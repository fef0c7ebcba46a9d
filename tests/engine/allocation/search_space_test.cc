// The predictor search's space: every configuration it samples, mutates or crosses removes exactly
// the uniform configuration's budget, within its bounds.
#include "worker/engine/allocation/search_space.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "tests/support/test_util.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/methods/masks.h"
#include "worker/engine/model/architecture_factory.h"

namespace shears::engine {
namespace {

using shears::testing::DataDir;

std::unique_ptr<Architecture> FixtureArchitecture() {
  auto model = ModelDir::Open(DataDir("tiny-llama"));
  return std::move(MakeArchitecture((*model)->config()).value());
}

int64_t Total(const std::vector<int64_t>& counts) { return std::accumulate(counts.begin(), counts.end(), int64_t{0}); }

TEST(SearchSpaceTest, EveryConfigurationRemovesExactlyTheUniformBudgetWithinItsBounds) {
  auto arch = FixtureArchitecture();
  for (double target : {0.5, 0.7}) {
    auto space = SearchSpace::For(*arch, target, 0.15).value();
    ASSERT_EQ(space.modules().size(), 4u) << "attention and MLP of two blocks";
    int64_t uniform = 0;
    for (const auto& m : space.modules()) {
      for (int64_t size : m.sizes) uniform += PrunedCount(size, target);
    }
    EXPECT_EQ(space.budget(), uniform);
    EXPECT_EQ(Total(space.Counts(space.Uniform())), space.budget());
    std::mt19937_64 rng(7);
    std::vector<Configuration> made;
    for (int i = 0; i < 200; ++i) made.push_back(space.Sample(rng));
    for (int i = 0; i < 200; ++i) {
      made.push_back(space.Mutate(space.Crossover(made[i], made[199 - i], rng), 0.5, 1.0, rng));
    }
    // Extremes the bounds must cut back.
    made.push_back(Configuration(space.modules().size(), 0.0));
    made.push_back(Configuration(space.modules().size(), 1.0));
    for (const auto& config : made) {
      EXPECT_EQ(Total(space.Counts(config)), space.budget());
      for (double sparsity : space.Realized(config)) {
        EXPECT_GE(sparsity, target - 0.15 - 1e-3);
        EXPECT_LE(sparsity, target + 0.15 + 1e-3);
      }
    }
    double spread = 0;
    for (const auto& config : made) spread = std::max(spread, std::abs(config[0] - target));
    EXPECT_GT(spread, 0.1) << "samples explore the space, not only the uniform point";
  }
}

}  // namespace
}  // namespace shears::engine
