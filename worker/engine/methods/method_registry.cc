#include "worker/engine/methods/method_registry.h"

#include "absl/strings/str_cat.h"
#include "worker/engine/api/job_rules.h"
#include "worker/engine/methods/magnitude.h"
#include "worker/engine/methods/random_pruning.h"
#include "worker/engine/methods/sparsegpt.h"
#include "worker/engine/methods/sparsellm.h"
#include "worker/engine/methods/wanda.h"

namespace shears::engine {

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
    default:
      break;  // the structured methods and the search have drivers of their own
  }
  return absl::InvalidArgumentError(
      absl::StrCat("method: ", MethodName(options.method), " does not prune linear by linear"));
}

}  // namespace shears::engine
