#include "worker/engine/io/model_config.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shears::engine {
namespace {

absl::StatusOr<int64_t> PositiveInt(const nlohmann::json& config, const std::string& key) {
  auto it = config.find(key);
  if (it == config.end() || !it->is_number_integer() || it->get<int64_t>() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", key, " must be a positive integer"));
  }
  return it->get<int64_t>();
}

// `fallback` when the key is absent or null.
absl::StatusOr<int64_t> OptionalInt(const nlohmann::json& config, const std::string& key, int64_t fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  return PositiveInt(config, key);
}

double OptionalNumber(const nlohmann::json& config, const std::string& key, double fallback) {
  auto it = config.find(key);
  return it != config.end() && it->is_number() ? it->get<double>() : fallback;
}

bool OptionalBool(const nlohmann::json& config, const std::string& key, bool fallback) {
  auto it = config.find(key);
  return it != config.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

absl::Status ParseLlama(const nlohmann::json& c, ModelConfig& m) {
  m.family = Family::kLlama;
  SHEARS_ASSIGN_OR_RETURN(m.hidden, PositiveInt(c, "hidden_size"));
  SHEARS_ASSIGN_OR_RETURN(m.ffn, PositiveInt(c, "intermediate_size"));
  SHEARS_ASSIGN_OR_RETURN(m.layers, PositiveInt(c, "num_hidden_layers"));
  SHEARS_ASSIGN_OR_RETURN(m.heads, PositiveInt(c, "num_attention_heads"));
  SHEARS_ASSIGN_OR_RETURN(m.kv_heads, OptionalInt(c, "num_key_value_heads", m.heads));
  SHEARS_ASSIGN_OR_RETURN(m.head_dim, OptionalInt(c, "head_dim", m.hidden / m.heads));
  SHEARS_ASSIGN_OR_RETURN(m.vocab, PositiveInt(c, "vocab_size"));
  if (m.heads % m.kv_heads != 0) {
    return absl::InvalidArgumentError("config.json: num_attention_heads must be a multiple of num_key_value_heads");
  }
  if (m.head_dim % 2 != 0) return absl::InvalidArgumentError("config.json: the head dimension must be even for RoPE");
  m.norm_eps = OptionalNumber(c, "rms_norm_eps", 1e-6);
  m.rope_theta = OptionalNumber(c, "rope_theta", 10000.0);
  m.tie_embeddings = OptionalBool(c, "tie_word_embeddings", false);
  // Mistral sets sliding_window (null in later versions); Qwen2 writes one but applies it only
  // with use_sliding_window.
  auto window = c.find("sliding_window");
  if (window != c.end() && window->is_number_integer() &&
      (m.model_type != "qwen2" || OptionalBool(c, "use_sliding_window", false))) {
    if (m.model_type == "qwen2" && c.contains("max_window_layers")) {
      return absl::InvalidArgumentError("config.json: Qwen2's max_window_layers is not supported yet");
    }
    SHEARS_ASSIGN_OR_RETURN(m.sliding_window, PositiveInt(c, "sliding_window"));
  }
  auto scaling = c.find("rope_scaling");
  if (scaling != c.end() && !scaling->is_null()) {
    return absl::InvalidArgumentError("config.json: rope_scaling is not supported yet");
  }
  return absl::OkStatus();
}

absl::Status ParseGpt2(const nlohmann::json& c, ModelConfig& m) {
  m.family = Family::kGpt2;
  SHEARS_ASSIGN_OR_RETURN(m.hidden, PositiveInt(c, "n_embd"));
  SHEARS_ASSIGN_OR_RETURN(m.layers, PositiveInt(c, "n_layer"));
  SHEARS_ASSIGN_OR_RETURN(m.heads, PositiveInt(c, "n_head"));
  SHEARS_ASSIGN_OR_RETURN(m.ffn, OptionalInt(c, "n_inner", 4 * m.hidden));
  SHEARS_ASSIGN_OR_RETURN(m.vocab, PositiveInt(c, "vocab_size"));
  SHEARS_ASSIGN_OR_RETURN(m.max_positions, PositiveInt(c, "n_positions"));
  m.kv_heads = m.heads;
  m.head_dim = m.hidden / m.heads;
  m.norm_eps = OptionalNumber(c, "layer_norm_epsilon", 1e-5);
  m.tie_embeddings = true;
  auto act = c.find("activation_function");
  m.activation = act != c.end() && act->is_string() ? act->get<std::string>() : "gelu_new";
  if (m.activation != "gelu_new") {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: activation_function '", m.activation, "' is not supported (supported: gelu_new)"));
  }
  return absl::OkStatus();
}

absl::Status ParseOpt(const nlohmann::json& c, ModelConfig& m) {
  m.family = Family::kOpt;
  SHEARS_ASSIGN_OR_RETURN(m.hidden, PositiveInt(c, "hidden_size"));
  SHEARS_ASSIGN_OR_RETURN(m.ffn, PositiveInt(c, "ffn_dim"));
  SHEARS_ASSIGN_OR_RETURN(m.layers, PositiveInt(c, "num_hidden_layers"));
  SHEARS_ASSIGN_OR_RETURN(m.heads, PositiveInt(c, "num_attention_heads"));
  SHEARS_ASSIGN_OR_RETURN(m.vocab, PositiveInt(c, "vocab_size"));
  SHEARS_ASSIGN_OR_RETURN(m.max_positions, PositiveInt(c, "max_position_embeddings"));
  SHEARS_ASSIGN_OR_RETURN(m.embed_dim, OptionalInt(c, "word_embed_proj_dim", m.hidden));
  m.kv_heads = m.heads;
  m.head_dim = m.hidden / m.heads;
  m.norm_eps = 1e-5;  // OPT's LayerNorms use PyTorch's default
  m.layer_norm_before = OptionalBool(c, "do_layer_norm_before", true);
  m.tie_embeddings = OptionalBool(c, "tie_word_embeddings", true);
  auto act = c.find("activation_function");
  m.activation = act != c.end() && act->is_string() ? act->get<std::string>() : "relu";
  if (m.activation != "relu") {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: activation_function '", m.activation, "' is not supported (supported: relu)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfig::Parse(const nlohmann::json& config) {
  ModelConfig m;
  auto type = config.find("model_type");
  if (type == config.end() || !type->is_string()) return absl::InvalidArgumentError("config.json: missing model_type");
  m.model_type = type->get<std::string>();
  absl::Status st;
  if (m.model_type == "llama" || m.model_type == "mistral" || m.model_type == "qwen2") {
    st = ParseLlama(config, m);
  } else if (m.model_type == "gpt2") {
    st = ParseGpt2(config, m);
  } else if (m.model_type == "opt") {
    st = ParseOpt(config, m);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("config.json: model_type '", m.model_type,
                                                   "' is not supported (supported: llama, mistral, qwen2, gpt2, opt)"));
  }
  if (!st.ok()) return st;
  if (auto sizes = config.find(kFfnSizesKey); sizes != config.end()) {
    if (!sizes->is_array() || static_cast<int64_t>(sizes->size()) != m.layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.json: ", kFfnSizesKey, " must list one size for each of the ", m.layers, " blocks"));
    }
    for (const auto& size : *sizes) {
      if (!size.is_number_integer() || size.get<int64_t>() < 1) {
        return absl::InvalidArgumentError(absl::StrCat("config.json: ", kFfnSizesKey, " holds a size that is not positive"));
      }
      m.block_ffn.push_back(size.get<int64_t>());
    }
  }
  if (auto ranks = config.find(kLowRankKey); ranks != config.end()) {
    if (!ranks->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat("config.json: ", kLowRankKey, " must map weight names to ranks"));
    }
    for (const auto& [name, rank] : ranks->items()) {
      if (!rank.is_number_integer() || rank.get<int64_t>() < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("config.json: ", kLowRankKey, " gives ", name, " a rank that is not positive"));
      }
      m.low_rank[name] = rank.get<int64_t>();
    }
  }
  if (m.hidden % m.heads != 0 && m.family != Family::kLlama) {
    return absl::InvalidArgumentError("config.json: the hidden size must be a multiple of the number of heads");
  }
  return m;
}

FactorNames FactorNamesOf(const std::string& name) {
  const std::string module = name.substr(0, name.rfind('.') + 1);
  return {module + "low_rank_u", module + "low_rank_v"};
}

const char* NumBlocksKey(Family family) { return family == Family::kGpt2 ? "n_layer" : "num_hidden_layers"; }

const char* FfnKey(Family family) {
  switch (family) {
    case Family::kGpt2:
      return "n_inner";
    case Family::kOpt:
      return "ffn_dim";
    default:
      return "intermediate_size";
  }
}

}  // namespace shears::engine
