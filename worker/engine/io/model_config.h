#pragma once
// The numbers in config.json that the engine computes with, for every supported model_type.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace shears::engine {

enum class Family { kLlama, kGemma, kPhi3, kGpt2, kOpt };

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

// Rotary position embeddings as config.json's rope_scaling (or rope_parameters) asks, computed as
// Hugging Face's modeling_rope_utils does (docs/models.md says which version).
struct RopeConfig {
  enum class Type { kDefault, kLinear, kDynamic, kYarn, kLlama3, kLongRope };
  Type type = Type::kDefault;
  double theta = 10000.0;
  double factor = 1.0;                // linear, dynamic, yarn, llama3
  int64_t max_positions = 0;          // max_position_embeddings (dynamic, yarn)
  int64_t original_max_positions = 0;  // llama3 (required), yarn and longrope (else max_positions)
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  double beta_fast = 32.0, beta_slow = 1.0;              // yarn
  bool truncate = true;                                  // yarn: round the correction range
  // LongRoPE: each rotated pair's frequency divided by its short factor, or by its long factor in
  // windows longer than original_max_positions.
  std::vector<double> short_factor, long_factor;
  double attention_factor = 1.0;  // scales cos and sin (yarn, longrope; 1 otherwise)
};

struct ModelConfig {
  Family family = Family::kLlama;
  std::string model_type;  // as written: one of kSupportedModelTypes
  int64_t hidden = 0;
  int64_t ffn = 0;
  // Per block, from kFfnSizesKey or the Nemotron-NAS block_configs (0: the block has no FFN);
  // empty: every block has `ffn`.
  std::vector<int64_t> block_ffn;
  std::map<std::string, int64_t> low_rank;  // from kLowRankKey: factored weights and their ranks
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  // Per block, from the Nemotron-NAS block_configs (0: the block has no attention); empty: every
  // block has `kv_heads`.
  std::vector<int64_t> block_kv_heads;
  int64_t head_dim = 0;
  int64_t rotary_dim = 0;  // the leading dimensions of each head that rotate (Phi-3's partial_rotary_factor)
  int64_t vocab = 0;
  int64_t max_positions = 0;  // 0 when the architecture has no learned positions
  double norm_eps = 1e-5;
  bool tie_embeddings = false;
  // llama and gemma families
  RopeConfig rope;
  // Per block, whether its layer type is sliding_attention, and how many positions back its
  // attention reaches (0: all). Empty: every block is full attention.
  std::vector<bool> block_sliding;
  std::vector<int64_t> block_window;
  // Gemma 3: the rotary schedule of the sliding blocks (rope_local_base_freq); else `rope` for all.
  std::optional<RopeConfig> sliding_rope;
  bool qkv_bias = false;  // q, k and v projections have biases (Qwen2; Llama's attention_bias)
  bool o_bias = false;    // the output projection has one (Llama's and Qwen3's attention_bias)
  bool mlp_bias = false;  // gate, up and down projections have biases (Llama's mlp_bias)
  bool qk_norm = false;   // RMSNorm over each head of q and k before the rotation (Qwen3, Gemma 3)
  // gemma family
  double norm_offset = 0.0;     // RMSNorm scales by norm_offset + weight (Gemma: 1, its weights start at 0)
  double embed_scale = 1.0;     // embeddings multiplied by it (Gemma: √hidden)
  double attn_scale = 0.0;      // of q·k; 0: 1/√head_dim (Gemma: query_pre_attn_scalar^-½)
  double attn_softcap = 0.0;    // scores -> cap·tanh(scores / cap) before the mask; 0: none
  double final_softcap = 0.0;   // the same on the logits
  // opt
  bool layer_norm_before = true;
  int64_t embed_dim = 0;  // word_embed_proj_dim; == hidden unless the model projects
  std::string activation;

  int64_t FfnOf(int block) const { return block_ffn.empty() ? ffn : block_ffn[block]; }
  int64_t KvHeadsOf(int block) const { return block_kv_heads.empty() ? kv_heads : block_kv_heads[block]; }
  bool HasMlp(int block) const { return FfnOf(block) > 0; }
  bool HasAttention(int block) const { return KvHeadsOf(block) > 0; }
  int64_t WindowOf(int block) const { return block_window.empty() ? 0 : block_window[block]; }
  bool SlidingOf(int block) const { return !block_sliding.empty() && block_sliding[block]; }
  const RopeConfig& RopeOf(int block) const { return sliding_rope && SlidingOf(block) ? *sliding_rope : rope; }

  // Fails naming the config key that is missing or wrong.
  static absl::StatusOr<ModelConfig> Parse(const nlohmann::json& config);
};

// The config.json keys that hold the number of decoder blocks and the FFN width.
const char* NumBlocksKey(Family family);
const char* FfnKey(Family family);

// `config` for the model that keeps only blocks `kept` (ascending input indices) in that order:
// the number of blocks and every field that lists or counts blocks (layer_types, written out for
// Gemma whose pattern follows the block index, max_window_layers, shears_intermediate_sizes, the
// low-rank map's block names).
nlohmann::json ConfigWithBlocks(const nlohmann::json& config, const ModelConfig& parsed, const std::vector<int>& kept,
                                const std::function<std::string(int)>& block_prefix);

// The model types Shears computes, for messages.
inline constexpr char kSupportedModelTypes[] =
    "llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3, gpt2, opt, nemotron-nas";

}  // namespace shears::engine
