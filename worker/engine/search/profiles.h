#pragma once
// Directions along which the predictor search moves many modules' sparsities together. A model of
// 32 blocks has 64 modules, too many for a few dozen measured configurations to map one by one,
// but the allocations that pay off share a few shapes whatever the depth: sparsity rising or
// falling with depth, the middle blocks against the ends, attention against the MLP, and OWL's
// outlier-weighted allocation. The search samples, mutates and describes its configurations
// along these, next to every module's own sparsity. No LibTorch.

#include <random>
#include <string>
#include <vector>

#include "worker/engine/allocation/search_space.h"

namespace shears::engine {

struct Profile {
  std::string name;
  // A deviation per module (SearchSpace::modules() order): zero mean weighted by module size,
  // so that moving along it keeps the budget; largest magnitude 1.
  Configuration direction;
};

// Depth, curvature, attention against MLP, and OWL (`owl`, a configuration of `space`; empty:
// none). A direction the model cannot express (one block; no attention modules) is left out.
std::vector<Profile> SearchProfiles(const SearchSpace& space, const Configuration& owl);

// target + max_deviation × (a random mix of the profiles + a little noise per module), on the budget.
Configuration SampleAlongProfiles(const SearchSpace& space, const std::vector<Profile>& profiles,
                                  double max_deviation, std::mt19937_64& rng);

// `config` moved by a normal step of `scale` × max_deviation along one profile drawn at random.
Configuration StepAlongProfile(const SearchSpace& space, const std::vector<Profile>& profiles, const Configuration& config,
                               double max_deviation, double scale, std::mt19937_64& rng);

// How far `config` lies along each profile: the size-weighted projection of its deviation from the
// target, in units of max_deviation (features for the predictor).
std::vector<float> ProfileCoordinates(const SearchSpace& space, const std::vector<Profile>& profiles,
                                      const Configuration& config, double max_deviation);

}  // namespace shears::engine
