#include "worker/engine/methods/pruning_method.h"

#include <chrono>

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

}  // namespace shears::engine
