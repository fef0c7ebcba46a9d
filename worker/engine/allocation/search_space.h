#pragma once
// The predictor search's space (Ji et al.): a sparsity for each block's attention and MLP, every
// configuration removing exactly as many weights as the uniform one. No LibTorch in the interface.

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace shears::engine {

class Architecture;

// What a configuration removes: weights of the block linears, or FFN neurons.
enum class SearchUnit { kWeights, kFfnNeurons };

// One block's attention or MLP: the linears whose sparsity moves together. Searching FFN neurons,
// a block's MLP is one unit "<block prefix>mlp" of as many elements as it has neurons.
struct SearchModule {
  int block = 0;
  bool mlp = false;
  std::vector<std::string> linears;  // full weight names
  std::vector<int64_t> sizes;        // their element counts
  int64_t size = 0;                  // their sum
};

// A configuration: one sparsity per module, in SearchSpace::modules() order.
using Configuration = std::vector<double>;

class SearchSpace {
 public:
  // Modules of every block of `arch`; sparsities within `max_deviation` of `target`.
  static absl::StatusOr<SearchSpace> For(const Architecture& arch, double target, double max_deviation,
                                         SearchUnit unit = SearchUnit::kWeights);

  const std::vector<SearchModule>& modules() const { return modules_; }
  SearchUnit unit() const { return unit_; }
  double target() const { return target_; }
  // The sparsities a module may take.
  double low() const { return low_; }
  double high() const { return high_; }
  // Weights every configuration removes: the uniform configuration's, each linear rounded alone.
  int64_t budget() const { return budget_; }

  Configuration Uniform() const { return Configuration(modules_.size(), target_); }
  // Around the target: a spread drawn per configuration, a deviation per module within it.
  Configuration Sample(std::mt19937_64& rng) const;
  // Each module moved by a normal step of `scale` × max_deviation with probability `rate`.
  Configuration Mutate(const Configuration& config, double rate, double scale, std::mt19937_64& rng) const;
  // Each module's sparsity from one parent or the other.
  Configuration Crossover(const Configuration& a, const Configuration& b, std::mt19937_64& rng) const;

  // The weights each linear loses (module order, then linear order), within the bounds and
  // summing to budget() exactly; the shortfall or excess of rounding and clamping is spread over
  // the linears in proportion to their room.
  std::vector<int64_t> Counts(const Configuration& config) const;
  // The configuration those counts realize (each module's removed share): what a feature or a
  // report should show.
  Configuration Realized(const Configuration& config) const;
  // Per linear sparsity (count / size) by full name, for PruneOptions::linear_sparsity.
  std::vector<std::pair<std::string, double>> LinearSparsity(const Configuration& config) const;

 private:
  std::vector<SearchModule> modules_;
  SearchUnit unit_ = SearchUnit::kWeights;
  double target_ = 0.0, low_ = 0.0, high_ = 0.0;
  int64_t budget_ = 0;
};

}  // namespace shears::engine
