// The shapes the predictor search samples and mutates along: each keeps the budget, and a
// configuration's coordinates along them read back how far it was moved.
#include "worker/engine/search/profiles.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "tests/support/test_util.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture_factory.h"

namespace shears::engine {
namespace {

TEST(Profiles, KeepTheBudgetAndReadBackTheirOwnSteps) {
  auto model = ModelDir::Open(shears::testing::DataDir("tiny-llama-deep"));
  auto arch = MakeArchitecture((*model)->config()).value();
  auto space = SearchSpace::For(*arch, 0.6, 0.25).value();
  ASSERT_EQ(space.modules().size(), 16u);
  Configuration owl = space.Uniform();
  for (size_t m = 0; m < owl.size(); ++m) owl[m] += (m % 3 == 0 ? 0.05 : -0.02);
  owl = space.Realized(owl);
  const auto profiles = SearchProfiles(space, owl);
  ASSERT_EQ(profiles.size(), 4u);
  EXPECT_EQ(profiles[0].name, "depth");
  EXPECT_EQ(profiles[2].name, "mlp");
  EXPECT_EQ(profiles[3].name, "owl");
  for (const Profile& p : profiles) {
    double weighted = 0, largest = 0;
    for (size_t m = 0; m < p.direction.size(); ++m) {
      weighted += p.direction[m] * double(space.modules()[m].size);
      largest = std::max(largest, std::abs(p.direction[m]));
    }
    EXPECT_NEAR(weighted, 0.0, 1e-6) << p.name << " moves along it without changing the budget";
    EXPECT_DOUBLE_EQ(largest, 1.0) << p.name;
    // A step of 0.1 × max_deviation along it reads back as 0.1 on it.
    Configuration moved = space.Uniform();
    for (size_t m = 0; m < moved.size(); ++m) moved[m] += 0.025 * p.direction[m];
    const size_t k = &p - profiles.data();
    EXPECT_NEAR(ProfileCoordinates(space, profiles, moved, 0.25)[k], 0.1, 1e-6) << p.name;  // a float feature
  }
  // Deeper modules sparser along depth; MLPs sparser than attention along mlp.
  EXPECT_LT(profiles[0].direction.front(), profiles[0].direction.back());
  EXPECT_GT(profiles[2].direction[1], profiles[2].direction[0]);
  EXPECT_TRUE(space.modules()[1].mlp);

  std::mt19937_64 rng(3);
  for (int i = 0; i < 50; ++i) {
    const Configuration sampled = SampleAlongProfiles(space, profiles, 0.25, rng);
    const Configuration stepped = StepAlongProfile(space, profiles, sampled, 0.25, 0.5, rng);
    for (const Configuration* c : {&sampled, &stepped}) {
      const auto counts = space.Counts(*c);
      EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), int64_t{0}), space.budget());
      for (double s : *c) {
        EXPECT_GE(s, space.low() - 1e-3) << "within a rounded weight per linear";
        EXPECT_LE(s, space.high() + 1e-3);
      }
    }
  }
}

TEST(Profiles, LeaveOutWhatTheModelCannotExpress) {
  auto model = ModelDir::Open(shears::testing::DataDir("tiny-llama-deep"));
  auto arch = MakeArchitecture((*model)->config()).value();
  auto neurons = SearchSpace::For(*arch, 0.5, 0.25, SearchUnit::kFfnNeurons).value();
  const auto profiles = SearchProfiles(neurons, {});
  ASSERT_EQ(profiles.size(), 2u) << "no attention modules, no OWL: depth and curvature";
  EXPECT_EQ(profiles[1].name, "curvature");
}

}  // namespace
}  // namespace shears::engine
