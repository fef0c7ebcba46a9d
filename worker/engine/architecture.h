#pragma once
// What the engine knows about each model_type: how many decoder blocks there are and which linear
// weights each block holds, with the shapes config.json implies.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/model_dir.h"

namespace shears::engine {

struct LinearWeight {
  std::string name;            // e.g. model.layers.0.mlp.up_proj.weight
  std::vector<int64_t> shape;  // as stored (gpt2's Conv1D stores [in, out])
};

class Architecture {
 public:
  // Fails with the config key that is missing or the model_type that is not supported.
  static absl::StatusOr<Architecture> FromConfig(const nlohmann::json& config);

  const std::string& model_type() const { return model_type_; }
  int num_blocks() const { return num_blocks_; }
  // The prunable linear weights of decoder block `block`.
  std::vector<LinearWeight> BlockLinears(int block) const;
  // Every block's linear weights exist in the model, as floating-point 2-D tensors of the expected shape.
  absl::Status CheckWeights(const ModelDir& model) const;

 private:
  struct Template {
    std::string suffix;          // after the block prefix
    std::vector<int64_t> shape;
  };
  std::string model_type_;
  std::string block_prefix_;  // "model.layers." or "transformer.h."
  int num_blocks_ = 0;
  std::vector<Template> linears_;
};

}  // namespace shears::engine
