// What the methods that prune while fine-tuning share: the student's loss.
#include "worker/engine/training/fine_tune.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "worker/engine/training/trainer.h"

namespace shears::engine {
namespace {

TEST(StudentLoss, DistillationAddsTheDivergenceFromTheTeacher) {
  torch::manual_seed(0);
  auto batch = torch::randint(0, 16, {2, 9});
  auto logits = torch::randn({2, 8, 16});
  const double ce = NextTokenCrossEntropy(logits, batch).item<double>();
  EXPECT_DOUBLE_EQ(StudentLoss(logits, batch, torch::Tensor()).item<double>(), ce);
  EXPECT_NEAR(StudentLoss(logits, batch, logits).item<double>(), 0.5 * ce, 1e-6) << "KL to itself is 0";
  auto teacher = torch::randn({2, 8, 16});
  auto log_p = torch::log_softmax(teacher, -1), log_q = torch::log_softmax(logits, -1);
  const double kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean().item<double>();
  EXPECT_GT(kl, 0.0);
  EXPECT_NEAR(StudentLoss(logits, batch, teacher).item<double>(), 0.5 * (ce + kl), 1e-5);
}

}  // namespace
}  // namespace shears::engine
