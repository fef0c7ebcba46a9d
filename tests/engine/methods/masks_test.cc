// Masks: the weights a target removes, from the scores.
#include "worker/engine/methods/masks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace shears::engine {
namespace {

TEST(MasksTest, AnExactCountByRowsPrunesThatManyAndRowsDifferByOneAtMost) {
  torch::manual_seed(3);
  auto scores = torch::rand({6, 10});
  auto mask = PruneMask(scores, SparsityTarget{0.45, 0, 0, /*exact_count=*/true}, MaskScope::kRow);
  EXPECT_EQ(mask.sum().item<int64_t>(), 27);
  auto per_row = mask.sum(1);
  EXPECT_EQ(per_row.min().item<int64_t>(), 4);
  EXPECT_EQ(per_row.max().item<int64_t>(), 5);
  // Within a row the pruned ones are its lowest scores.
  for (int r = 0; r < 6; ++r) {
    auto pruned = scores[r].masked_select(mask[r]), kept = scores[r].masked_select(~mask[r]);
    EXPECT_LT(pruned.max().item<float>(), kept.min().item<float>());
  }
}

}  // namespace
}  // namespace shears::engine
