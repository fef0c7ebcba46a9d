// The predictor search's gradient-boosted trees and the rank correlation that validates them.
#include "worker/engine/search/gbt_predictor.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace shears::engine {
namespace {

TEST(GbtPredictorTest, SpearmanCorrelationOfRanks) {
  EXPECT_DOUBLE_EQ(SpearmanCorrelation({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0);
  EXPECT_DOUBLE_EQ(SpearmanCorrelation({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
  EXPECT_NEAR(SpearmanCorrelation({1, 2, 3, 4, 5}, {5, 6, 7, 8, 7}), 0.820783, 1e-5) << "ties share their rank";
  EXPECT_EQ(SpearmanCorrelation({1, 1, 1}, {1, 2, 3}), 0.0);
}

TEST(GbtPredictorTest, LearnsAMonotoneFunctionItCanRankOnUnseenPoints) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<std::vector<float>> x, test;
  std::vector<float> y;
  std::vector<double> truth;
  for (int i = 0; i < 60; ++i) {
    x.push_back({u(rng), u(rng), u(rng)});
    y.push_back(3 * x.back()[0] + x.back()[1] * x.back()[1]);
  }
  for (int i = 0; i < 30; ++i) {
    test.push_back({u(rng), u(rng), u(rng)});
    truth.push_back(3 * test.back()[0] + test.back()[1] * test.back()[1]);
  }
  auto predictor = GbtPredictor::Train(x, y, 5);
  ASSERT_TRUE(predictor.ok()) << predictor.status();
  auto predicted = (*predictor)->Predict(test).value();
  EXPECT_GT(SpearmanCorrelation(std::vector<double>(predicted.begin(), predicted.end()), truth), 0.9);
}

}  // namespace
}  // namespace shears::engine
