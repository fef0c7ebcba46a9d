#pragma once
// The Nemotron-NAS layout (NVIDIA's DeciLM: architectures ["DeciLMForCausalLM"], model_type
// "nemotron-nas"), which vLLM's DeciLMForCausalLM serves natively: a Llama whose decoder blocks
// each have their own number of KV heads and FFN width, or no attention or no FFN at all, listed in
// config.json's block_configs. Structured pruning that leaves blocks of different shapes writes it
// (docs/models.md says which readers load what), and the engine reads it back.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/io/model_config.h"

namespace shears::engine {

inline constexpr char kNemotronNasType[] = "nemotron-nas";

// One decoder block's shape after structured pruning; 0 removes the sublayer.
struct BlockShape {
  int64_t kv_heads = 0;
  int64_t ffn = 0;
  bool operator==(const BlockShape& o) const { return kv_heads == o.kv_heads && ffn == o.ffn; }
};

// The shape of each block of `m`.
std::vector<BlockShape> BlockShapesOf(const ModelConfig& m);

// Reads config.json's block_configs into m.block_kv_heads and m.block_ffn (m.heads, m.hidden and
// m.layers already read), and sets m.kv_heads and m.ffn to the largest. Fails naming the entry.
absl::Status ParseBlockConfigs(const nlohmann::json& config, ModelConfig& m);

// The family of `m` has a Nemotron-NAS form: Llama, and Mistral without sliding windows (and
// Nemotron-NAS itself), with no biases but on all of attention's linears or none.
bool ExpressibleAsNemotronNas(const ModelConfig& m);

// vLLM's DeciLM adds a block's FFN onto the residual stream that an attention sublayer opened:
// INVALID_ARGUMENT unless the first block that keeps a sublayer keeps its attention.
absl::Status CheckServableShapes(const std::vector<BlockShape>& shapes);

// config.json for the model `config` (parsed as `parsed`) with its blocks shaped as `shapes`:
// - every block alike and whole: the family's own config (intermediate_size, num_key_value_heads
//   rewritten), which stock loaders read; a Nemotron-NAS input stays in its layout;
// - otherwise the Nemotron-NAS layout, for the families it expresses (Llama and Mistral without
//   sliding windows), each block's FFN written as intermediate_size;
// - GPT-2, OPT and the other Llama-shaped families with only their FFN widths differing: the
//   family's config with `shears_intermediate_sizes`, which only Shears reads.
// Fails when the shapes need a layout the family has none of (removed sublayers, per-block heads).
absl::StatusOr<nlohmann::json> ConfigWithBlockShapes(const nlohmann::json& config, const ModelConfig& parsed,
                                                     const std::vector<BlockShape>& shapes);

// The files a config.json needs beside it that Shears writes (the configuration class through
// which Hugging Face reads the Nemotron-NAS layout Shears writes), by file name; none for others.
std::map<std::string, std::string> LayoutFiles(const nlohmann::json& config);

}  // namespace shears::engine
