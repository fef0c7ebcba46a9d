#include "worker/engine/pruning_method.h"

#include "worker/engine/magnitude.h"

namespace shears::engine {

absl::StatusOr<std::unique_ptr<PruningMethod>> MakePruningMethod(const PruneOptions& options) {
  switch (options.method) {
    case Method::kMagnitude:
      return std::make_unique<MagnitudePruning>();
  }
  return absl::InvalidArgumentError("unknown pruning method");
}

}  // namespace shears::engine
