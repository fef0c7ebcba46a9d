#pragma once
// Picks the architecture a config.json names; above the families it knows, never beside their
// interface.

#include <memory>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/model/architecture.h"

namespace shears::engine {

// Fails with the config key that is missing or the model_type that is not supported.
absl::StatusOr<std::unique_ptr<Architecture>> MakeArchitecture(const nlohmann::json& config);

}  // namespace shears::engine
