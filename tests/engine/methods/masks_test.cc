// Masks: the weights a target removes, from the scores.
#include "worker/engine/methods/masks.h"

#include <ATen/Parallel.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "worker/engine/methods/selection.h"

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

// The first k of a stable ascending sort of every row: what the selection must match exactly.
torch::Tensor SortedLowest(const torch::Tensor& scores, int64_t k) {
  auto mask = torch::zeros(scores.sizes(), torch::kBool);
  auto order = std::get<1>((scores + 0.0).sort(c10::optional<bool>(true), /*dim=*/1));
  mask.scatter_(1, order.slice(1, 0, k), true);
  return mask;
}

TEST(SelectionTest, TheLowestPerRowAreTheFirstOfAStableSortForEveryShapeAndTie) {
  at::set_num_threads(2);
  torch::manual_seed(5);
  // Values rounded to BF16 tie by the thousand; negatives, both zeros and an exact row of ties.
  auto ties = torch::randn({1, 300000}).to(torch::kBFloat16).to(torch::kFloat32);
  auto signed_zeros = torch::tensor({{0.0f, -0.0f, 1.0f, -1.0f, 0.0f, -0.0f, 2.0f, -3.0f}});
  struct Case {
    torch::Tensor scores;
    std::vector<int64_t> ks;
  };
  const std::vector<Case> cases = {
      {torch::rand({64, 4}), {1, 2, 3}},                                // N:M groups
      {torch::rand({37, 1000}).to(torch::kBFloat16).abs(), {1, 500, 999}},  // rows, BF16 scores
      {torch::randn({5, 70000}), {1, 35000, 69999}},                       // few long rows
      {ties, {1, 150000, 299999}},                                         // one long row, ties
      // Rows over 2^20 entries: bracketed by a sample, with ties, and all equal (digit by digit).
      {torch::randn({1, 1500000}), {1, 700001, 1499999}},
      {torch::randn({1, 1200000}).to(torch::kBFloat16).to(torch::kFloat32).abs(), {3, 600000, 1199000}},
      {torch::full({1, 1100000}, -2.0f), {550000}},
      {torch::full({3, 100}, 0.25f), {10, 50}},
      {signed_zeros, {1, 3, 5, 7}}};
  for (const auto& c : cases) {
    for (int64_t k : c.ks) {
      auto mask = LowestPerRow(c.scores, k);
      EXPECT_TRUE(mask.equal(SortedLowest(c.scores.to(torch::kFloat32), k)))
          << c.scores.sizes() << " k=" << k;
      EXPECT_EQ(mask.sum().item<int64_t>(), c.scores.size(0) * k);
    }
  }
  EXPECT_EQ(LowestPerRow(ties, 0).sum().item<int64_t>(), 0);
  EXPECT_EQ(LowestPerRow(ties, 300000).sum().item<int64_t>(), 300000);
}

// Half-precision weights pruned from their bits zero exactly the entries the F32 selection marks
// on their magnitudes (ties to the lower index, -0 equal to 0, split across the threads' chunks),
// and leave every other bit as it was.
TEST(SelectionTest, HalfPrecisionMagnitudesZeroWhatTheF32SelectionMarks) {
  at::set_num_threads(2);
  torch::manual_seed(7);
  for (const auto dtype : {torch::kBFloat16, torch::kHalf}) {
    // BF16 ties by the thousand here; zeros of both signs and large ties spread over both halves.
    auto weight = torch::randn({1100, 300}).to(dtype);
    weight.view(-1).slice(0, 0, 1000).fill_(0.0);
    weight.view(-1).slice(0, 1000, 2000).fill_(-0.0);
    weight.view(-1).slice(0, 200000, 230000).fill_(-0.5);
    weight.view(-1).slice(0, 300000, 310000).fill_(0.5);
    for (const int64_t k : {int64_t{1}, int64_t{1500}, int64_t{165000}, int64_t{329999}}) {
      auto pruned = weight.clone();
      ASSERT_TRUE(ZeroSmallestMagnitudes(pruned, k));
      const auto mask = LowestEntries(weight.abs().to(torch::kFloat32), k);
      const auto expected = weight.masked_fill(mask, 0.0);
      EXPECT_TRUE(pruned.view(torch::kInt16).equal(expected.view(torch::kInt16))) << dtype << " k=" << k;
    }
    auto all = weight.clone();
    ASSERT_TRUE(ZeroSmallestMagnitudes(all, all.numel()));
    EXPECT_EQ(all.count_nonzero().item<int64_t>(), 0);
    auto none = weight.clone();
    ASSERT_TRUE(ZeroSmallestMagnitudes(none, 0));
    EXPECT_TRUE(none.view(torch::kInt16).equal(weight.view(torch::kInt16)));
  }
  // Anything else is left to the general path, untouched.
  auto f32 = torch::randn({10, 10});
  auto transposed = torch::randn({10, 20}).to(torch::kBFloat16).t();
  const auto before = transposed.clone();
  EXPECT_FALSE(ZeroSmallestMagnitudes(f32, 5));
  EXPECT_FALSE(ZeroSmallestMagnitudes(transposed, 5));
  EXPECT_TRUE(transposed.equal(before));
}

TEST(MasksTest, AMatrixScopeMaskPrunesExactlyItsCountWithTiesToTheLowerIndex) {
  auto scores = torch::tensor({{0.5f, 0.1f, 0.5f}, {0.5f, 0.9f, 0.5f}});
  auto mask = PruneMask(scores, SparsityTarget{0.5}, MaskScope::kMatrix);
  EXPECT_TRUE(mask.equal(torch::tensor({{true, true, true}, {false, false, false}})));
}

}  // namespace
}  // namespace shears::engine
