#include "worker/engine/model/rope.h"

#include <algorithm>
#include <cmath>

namespace shears::engine {
namespace {

// theta^(2i / dim) for i < dim / 2.
torch::Tensor PairExponents(double theta, int64_t dim) {
  return torch::pow(theta, torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(dim));
}

// Llama 3.1: wavelengths shorter than original / high_freq_factor are kept, longer than
// original / low_freq_factor divided by the factor, and those between blended smoothly.
torch::Tensor Llama3(const RopeConfig& rope, const torch::Tensor& inv) {
  const double original = static_cast<double>(rope.original_max_positions);
  const double low_wavelen = original / rope.low_freq_factor, high_wavelen = original / rope.high_freq_factor;
  const torch::Tensor wavelen = 2 * M_PI / inv;
  torch::Tensor scaled = torch::where(wavelen > low_wavelen, inv / rope.factor, inv);
  const torch::Tensor smooth = (original / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
  const torch::Tensor smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled;
  const torch::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
  return torch::where(medium, smoothed, scaled);
}

// YaRN: interpolated (divided by the factor) below the dimensions that rotate beta_slow times
// over the original context, extrapolated (kept) above those that rotate beta_fast times, and a
// linear ramp between.
torch::Tensor Yarn(const RopeConfig& rope, int64_t dim) {
  const torch::Tensor pos = PairExponents(rope.theta, dim);
  const torch::Tensor extrapolation = 1.0 / pos, interpolation = 1.0 / (rope.factor * pos);
  auto correction_dim = [&](double rotations) {
    return (static_cast<double>(dim) * std::log(static_cast<double>(rope.original_max_positions) / (rotations * 2 * M_PI))) /
           (2 * std::log(rope.theta));
  };
  double low = correction_dim(rope.beta_fast), high = correction_dim(rope.beta_slow);
  if (rope.truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0), high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // no singular ramp
  const torch::Tensor ramp = ((torch::arange(dim / 2, torch::kFloat32) - low) / (high - low)).clamp(0, 1);
  const torch::Tensor extrapolated = 1 - ramp;
  return interpolation * (1 - extrapolated) + extrapolation * extrapolated;
}

}  // namespace

torch::Tensor InverseFrequencies(const RopeConfig& rope, int64_t dim, int64_t length) {
  const torch::Tensor inv = 1.0 / PairExponents(rope.theta, dim);
  switch (rope.type) {
    case RopeConfig::Type::kLongRope: {
      const auto& factors = length > rope.original_max_positions ? rope.long_factor : rope.short_factor;
      return inv / torch::tensor(factors, torch::kFloat64).to(torch::kFloat32);
    }
    case RopeConfig::Type::kLinear:
      return inv / rope.factor;
    case RopeConfig::Type::kLlama3:
      return Llama3(rope, inv);
    case RopeConfig::Type::kYarn:
      return Yarn(rope, dim);
    case RopeConfig::Type::kDynamic:  // the default frequencies within max_position_embeddings
    case RopeConfig::Type::kDefault:
      break;
  }
  return inv;
}

Rotary RotaryTables(int64_t length, int64_t dim, const RopeConfig& rope, const torch::Device& device) {
  const torch::Tensor inv = InverseFrequencies(rope, dim, length).to(device);
  const torch::Tensor freqs = torch::outer(torch::arange(length, inv.options()), inv);
  const torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  return {emb.cos() * rope.attention_factor, emb.sin() * rope.attention_factor};
}

torch::Tensor ApplyRotary(const torch::Tensor& x, const Rotary& rotary) {
  const int64_t dim = rotary.cos.size(-1);
  if (dim < x.size(-1)) {
    return torch::cat({ApplyRotary(x.narrow(-1, 0, dim), rotary), x.narrow(-1, dim, x.size(-1) - dim)}, -1);
  }
  auto halves = x.chunk(2, -1);
  auto rotated = torch::cat({-halves[1], halves[0]}, -1);
  return x * rotary.cos + rotated * rotary.sin;
}

}  // namespace shears::engine
