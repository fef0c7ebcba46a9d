#pragma once
// The numbers in config.json that the engine computes with, for every supported model_type.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace shears::engine {

enum class Family { kLlama, kGpt2, kOpt };

struct ModelConfig {
  Family family = Family::kLlama;
  std::string model_type;  // as written: llama, mistral, qwen2, gpt2, opt
  int64_t hidden = 0;
  int64_t ffn = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab = 0;
  int64_t max_positions = 0;  // 0 when the architecture has no learned positions
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_embeddings = false;
  int64_t sliding_window = 0;  // llama family: attention reaches this many positions back (0: all)
  // opt
  bool layer_norm_before = true;
  int64_t embed_dim = 0;  // word_embed_proj_dim; == hidden unless the model projects
  std::string activation;

  // Fails naming the config key that is missing or wrong.
  static absl::StatusOr<ModelConfig> Parse(const nlohmann::json& config);
};

// The config.json key that holds the number of decoder blocks.
const char* NumBlocksKey(Family family);

}  // namespace shears::engine
