#include "worker/engine/pruning_method.h"

#include <chrono>

#include "worker/engine/magnitude.h"
#include "worker/engine/random_pruning.h"
#include "worker/engine/sparsegpt.h"
#include "worker/engine/sparsellm.h"
#include "worker/engine/wanda.h"

namespace shears::engine {

LinearToPrune* BlockToPrune::Find(const std::string& name) {
  for (auto& linear : linears) {
    if (linear.name == name) return &linear;
  }
  return nullptr;
}

absl::Status PruningMethod::PruneBlock(BlockToPrune& block) {
  for (auto& linear : block.linears) {
    const auto start = std::chrono::steady_clock::now();
    if (auto st = PruneLinear(linear, linear.target.value_or(block.target)); !st.ok()) return st;
    linear.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PruningMethod>> MakePruningMethod(const PruneOptions& options) {
  switch (options.method) {
    case Method::kMagnitude:
      return std::make_unique<MagnitudePruning>();
    case Method::kRandom:
      return std::make_unique<RandomPruning>(options.seed);
    case Method::kWanda:
      return std::make_unique<WandaPruning>();
    case Method::kSparseGpt:
      return std::make_unique<SparseGptPruning>();
    case Method::kSparseLlm:
      return std::make_unique<SparseLlmPruning>(options.sparsellm);
    case Method::kBlockInfluence:
    case Method::kLastBlocks:
      break;  // structured: removes blocks, see layer_removal.h
    default:
      break;  // the structured and searching methods have their own drivers
  }
  return absl::InvalidArgumentError("unknown pruning method");
}

}  // namespace shears::engine
