#include "worker/engine/allocation/search_space.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "worker/engine/methods/masks.h"
#include "worker/engine/model/architecture.h"

namespace shears::engine {

absl::StatusOr<SearchSpace> SearchSpace::For(const Architecture& arch, double target, double max_deviation,
                                              SearchUnit unit) {
  if (!(target > 0.0 && target < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("target_sparsity: the search needs a target in (0, 1), got ", target));
  }
  SearchSpace space;
  space.unit_ = unit;
  space.target_ = target;
  space.low_ = std::max(0.0, target - max_deviation);
  space.high_ = std::min(0.99, target + max_deviation);
  if (unit == SearchUnit::kFfnNeurons) {
    for (int b = 0; b < arch.num_blocks(); ++b) {
      const int64_t width = arch.config().FfnOf(b);
      space.modules_.push_back({b, true, {arch.BlockPrefix(b) + "mlp"}, {width}, width});
      space.budget_ += PrunedCount(width, target);
    }
    return space;
  }
  const MlpLayout mlp = arch.Mlp();
  for (int b = 0; b < arch.num_blocks(); ++b) {
    SearchModule attention{b, false, {}, {}, 0}, feed_forward{b, true, {}, {}, 0};
    const std::string prefix = arch.BlockPrefix(b);
    for (const auto& linear : arch.BlockLinears(b)) {
      const std::string local = linear.name.substr(prefix.size());
      SearchModule& module = (local == mlp.up || local == mlp.gate || local == mlp.down) ? feed_forward : attention;
      const int64_t size = std::accumulate(linear.shape.begin(), linear.shape.end(), int64_t{1}, std::multiplies<>());
      module.linears.push_back(linear.name);
      module.sizes.push_back(size);
      module.size += size;
      space.budget_ += PrunedCount(size, target);
    }
    for (auto* module : {&attention, &feed_forward}) {
      if (module->size > 0) space.modules_.push_back(std::move(*module));
    }
  }
  return space;
}

Configuration SearchSpace::Sample(std::mt19937_64& rng) const {
  const double spread = std::uniform_real_distribution<>(0.0, 1.0)(rng);
  std::uniform_real_distribution<> unit(-1.0, 1.0);
  Configuration config(modules_.size());
  for (auto& sparsity : config) sparsity = std::clamp(target_ + spread * (high_ - low_) / 2 * unit(rng), low_, high_);
  return Realized(config);
}

Configuration SearchSpace::Mutate(const Configuration& config, double rate, double scale,
                                  std::mt19937_64& rng) const {
  std::bernoulli_distribution moves(rate);
  std::normal_distribution<> step(0.0, scale * (high_ - low_) / 2);
  Configuration out = config;
  for (auto& sparsity : out) {
    if (moves(rng)) sparsity = std::clamp(sparsity + step(rng), low_, high_);
  }
  return Realized(out);
}

Configuration SearchSpace::Crossover(const Configuration& a, const Configuration& b, std::mt19937_64& rng) const {
  std::bernoulli_distribution from_a(0.5);
  Configuration out(a.size());
  for (size_t i = 0; i < a.size(); ++i) out[i] = from_a(rng) ? a[i] : b[i];
  return Realized(out);
}

std::vector<int64_t> SearchSpace::Counts(const Configuration& config) const {
  std::vector<int64_t> counts, low, high;
  for (size_t m = 0; m < modules_.size(); ++m) {
    for (int64_t size : modules_[m].sizes) {
      low.push_back(PrunedCount(size, low_));
      high.push_back(PrunedCount(size, high_));
      counts.push_back(std::clamp(PrunedCount(size, config[m]), low.back(), high.back()));
    }
  }
  // Move the total to the budget: first in proportion to each linear's room, then one weight at a
  // time from the first linear with room, which ends it exactly.
  int64_t missing = budget_ - std::accumulate(counts.begin(), counts.end(), int64_t{0});
  for (int pass = 0; pass < 2 && missing != 0; ++pass) {
    std::vector<int64_t> room(counts.size());
    for (size_t j = 0; j < counts.size(); ++j) room[j] = missing > 0 ? high[j] - counts[j] : counts[j] - low[j];
    const int64_t total_room = std::accumulate(room.begin(), room.end(), int64_t{0});
    if (total_room == 0) break;
    const int64_t want = missing > 0 ? missing : -missing;
    for (size_t j = 0; j < counts.size() && missing != 0; ++j) {
      const int64_t left = missing > 0 ? missing : -missing;
      int64_t step = pass == 0 ? static_cast<int64_t>(std::floor(double(want) * double(room[j]) / double(total_room)))
                               : room[j];
      step = std::min(step, left);
      counts[j] += missing > 0 ? step : -step;
      missing += missing > 0 ? -step : step;
    }
  }
  return counts;
}

Configuration SearchSpace::Realized(const Configuration& config) const {
  const auto counts = Counts(config);
  Configuration out(modules_.size());
  size_t j = 0;
  for (size_t m = 0; m < modules_.size(); ++m) {
    int64_t removed = 0;
    for (size_t i = 0; i < modules_[m].sizes.size(); ++i) removed += counts[j++];
    out[m] = double(removed) / double(modules_[m].size);
  }
  return out;
}

std::vector<std::pair<std::string, double>> SearchSpace::LinearSparsity(const Configuration& config) const {
  const auto counts = Counts(config);
  std::vector<std::pair<std::string, double>> out;
  size_t j = 0;
  for (const auto& module : modules_) {
    for (size_t i = 0; i < module.linears.size(); ++i, ++j) {
      out.emplace_back(module.linears[i], double(counts[j]) / double(module.sizes[i]));
    }
  }
  return out;
}

}  // namespace shears::engine
