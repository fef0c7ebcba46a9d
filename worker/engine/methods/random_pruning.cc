#include "worker/engine/methods/random_pruning.h"

#include "worker/engine/methods/masks.h"

namespace shears::engine {
namespace {

// FNV-1a: a name hash that is the same in every build, unlike std::hash.
uint64_t NameHash(const std::string& name) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  return h;
}

}  // namespace

absl::Status RandomPruning::PruneLinear(LinearToPrune& linear, const SparsityTarget& target) {
  // The scores are drawn on the CPU: CUDA's generator would give other numbers for the same seed.
  auto generator = at::detail::createCPUGenerator(seed_ ^ NameHash(linear.name));
  auto scores = at::rand(linear.weight.sizes(), generator, torch::kFloat32);
  ZeroLowestScores(linear.weight, scores.to(linear.weight.device()), target, MaskScope::kMatrix);
  return absl::OkStatus();
}

}  // namespace shears::engine
