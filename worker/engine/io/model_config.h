#pragma once
// The numbers in config.json that the engine computes with, for every supported model_type.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace shears::engine {

enum class Family { kLlama, kGpt2, kOpt };

// config.json's list of each block's FFN width, written when FFN-neuron pruning left the blocks
// with different widths (no Hugging Face config has such a field; Shears reads its own).
inline constexpr char kFfnSizesKey[] = "shears_intermediate_sizes";

// config.json's map from a linear weight's full name to the rank of the factors stored in its
// place (low-rank pruning): the weight W [out, in] (nn.Linear's orientation, also for GPT-2's
// Conv1D) is replaced by `<module>.low_rank_u` [out, r] and `<module>.low_rank_v` [r, in] with
// W = U·V. Shears' own field, which the engine reads back.
inline constexpr char kLowRankKey[] = "shears_low_rank";

// The names of the two factors stored instead of weight `name` ("...up_proj.weight").
struct FactorNames {
  std::string u, v;
};
FactorNames FactorNamesOf(const std::string& name);

struct ModelConfig {
  Family family = Family::kLlama;
  std::string model_type;  // as written: llama, mistral, qwen2, gpt2, opt
  int64_t hidden = 0;
  int64_t ffn = 0;
  std::vector<int64_t> block_ffn;  // per block, from kFfnSizesKey; empty: every block has `ffn`
  std::map<std::string, int64_t> low_rank;  // from kLowRankKey: factored weights and their ranks
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

  int64_t FfnOf(int block) const { return block_ffn.empty() ? ffn : block_ffn[block]; }

  // Fails naming the config key that is missing or wrong.
  static absl::StatusOr<ModelConfig> Parse(const nlohmann::json& config);
};

// The config.json keys that hold the number of decoder blocks and the FFN width.
const char* NumBlocksKey(Family family);
const char* FfnKey(Family family);

}  // namespace shears::engine
