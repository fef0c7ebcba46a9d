#include "worker/engine/search/profiles.h"

#include <algorithm>
#include <cmath>

namespace shears::engine {
namespace {

// `raw` with its size-weighted mean removed and scaled to a largest magnitude of 1; empty when
// nothing is left (the direction is constant over the modules).
Configuration Normalized(const SearchSpace& space, Configuration raw) {
  double weighted = 0.0, total = 0.0;
  for (size_t m = 0; m < raw.size(); ++m) {
    weighted += raw[m] * double(space.modules()[m].size);
    total += double(space.modules()[m].size);
  }
  double largest = 0.0;
  for (double& v : raw) {
    v -= weighted / total;
    largest = std::max(largest, std::abs(v));
  }
  if (largest < 1e-9) return {};
  for (double& v : raw) v /= largest;
  return raw;
}

}  // namespace

std::vector<Profile> SearchProfiles(const SearchSpace& space, const Configuration& owl) {
  int blocks = 0;
  for (const auto& module : space.modules()) blocks = std::max(blocks, module.block + 1);
  Configuration depth, curvature, kind, outliers;
  for (size_t m = 0; m < space.modules().size(); ++m) {
    const SearchModule& module = space.modules()[m];
    const double d = blocks > 1 ? 2.0 * module.block / (blocks - 1) - 1.0 : 0.0;
    depth.push_back(d);
    curvature.push_back(d * d);
    kind.push_back(module.mlp ? 1.0 : -1.0);
    if (!owl.empty()) outliers.push_back(owl[m] - space.target());
  }
  std::vector<Profile> profiles;
  for (auto& [name, raw] : {std::pair<std::string, Configuration>{"depth", depth}, {"curvature", curvature},
                            {"mlp", kind}, {"owl", outliers}}) {
    if (raw.empty()) continue;
    Configuration direction = Normalized(space, raw);
    if (!direction.empty()) profiles.push_back({name, std::move(direction)});
  }
  return profiles;
}

Configuration SampleAlongProfiles(const SearchSpace& space, const std::vector<Profile>& profiles,
                                  double max_deviation, std::mt19937_64& rng) {
  std::uniform_real_distribution<> unit(-1.0, 1.0), share(0.0, 1.0);
  // Most of the spread along the profiles, a smaller share (drawn per configuration) module by module.
  const double along = share(rng), noise = 0.3 * share(rng);
  Configuration config(space.modules().size(), space.target());
  for (const Profile& profile : profiles) {
    const double c = along * unit(rng) / std::sqrt(double(profiles.size()));
    for (size_t m = 0; m < config.size(); ++m) config[m] += max_deviation * c * profile.direction[m];
  }
  for (double& s : config) s += max_deviation * noise * unit(rng);
  return space.Realized(config);
}

Configuration StepAlongProfile(const SearchSpace& space, const std::vector<Profile>& profiles, const Configuration& config,
                               double max_deviation, double scale, std::mt19937_64& rng) {
  if (profiles.empty()) return config;
  const Profile& profile = profiles[std::uniform_int_distribution<size_t>(0, profiles.size() - 1)(rng)];
  const double step = std::normal_distribution<>(0.0, scale * max_deviation)(rng);
  Configuration out = config;
  for (size_t m = 0; m < out.size(); ++m) out[m] += step * profile.direction[m];
  return space.Realized(out);
}

std::vector<float> ProfileCoordinates(const SearchSpace& space, const std::vector<Profile>& profiles,
                                      const Configuration& config, double max_deviation) {
  std::vector<float> out;
  for (const Profile& profile : profiles) {
    double along = 0.0, norm = 0.0;
    for (size_t m = 0; m < config.size(); ++m) {
      const double w = double(space.modules()[m].size);
      along += w * (config[m] - space.target()) * profile.direction[m];
      norm += w * profile.direction[m] * profile.direction[m];
    }
    out.push_back(static_cast<float>(along / norm / max_deviation));
  }
  return out;
}

}  // namespace shears::engine
