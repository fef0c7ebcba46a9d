#include "worker/engine/io/model_config.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/io/nemotron_nas.h"

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

absl::Status Unsupported(const std::string& field, const std::string& value, const std::string& supported) {
  return absl::InvalidArgumentError(
      absl::StrCat("config.json: ", field, " ", value, " is not supported (supported: ", supported, ")"));
}

std::string Quoted(const nlohmann::json& value) { return value.is_string() ? "'" + value.get<std::string>() + "'" : value.dump(); }

// A number of the rope parameters, or `fallback` when absent or null.
absl::StatusOr<double> RopeNumber(const nlohmann::json& rope, const std::string& where, const std::string& key,
                                  std::optional<double> fallback) {
  auto it = rope.find(key);
  if (it == rope.end() || it->is_null()) {
    if (fallback) return *fallback;
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", where, ".", key, " is required"));
  }
  if (!it->is_number()) return absl::InvalidArgumentError(absl::StrCat("config.json: ", where, ".", key, " must be a number"));
  return it->get<double>();
}

// LongRoPE (Phi-3's long-context models, Phi-3.5, Phi-4-mini): a short and a long factor for each
// rotated pair; the factor, when the object gives none, is the extended context over the
// original one (transformers 5), and sets the attention factor.
absl::Status ParseLongRope(const nlohmann::json& rope, const std::string& where, const nlohmann::json& c,
                           const ModelConfig& m, RopeConfig& r) {
  const size_t pairs = static_cast<size_t>(m.rotary_dim / 2);
  for (auto [key, into] : {std::pair{"short_factor", &r.short_factor}, std::pair{"long_factor", &r.long_factor}}) {
    auto it = rope.find(key);
    const bool listed = it != rope.end() && it->is_array() && it->size() == pairs &&
                        std::all_of(it->begin(), it->end(), [](const auto& v) { return v.is_number() && v > 0; });
    if (!listed) {
      return absl::InvalidArgumentError(absl::StrCat("config.json: ", where, ".", key, " must list ", pairs,
                                                     " positive numbers, one for each rotated pair of the ",
                                                     m.rotary_dim, " dimensions of a head that rotate"));
    }
    for (const auto& v : *it) into->push_back(v.get<double>());
  }
  // The context the model was trained at: the object's, else config.json's (Phi3Config's default
  // 4096), else max_position_embeddings.
  const double top = OptionalNumber(c, "original_max_position_embeddings",
                                    m.family == Family::kPhi3 ? 4096.0 : static_cast<double>(r.max_positions));
  SHEARS_ASSIGN_OR_RETURN(double original, RopeNumber(rope, where, "original_max_position_embeddings", top));
  r.original_max_positions = static_cast<int64_t>(original);
  if (r.original_max_positions <= 0 || r.max_positions <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: ", where, ".rope_type 'longrope' needs max_position_embeddings and original_max_position_embeddings"));
  }
  SHEARS_ASSIGN_OR_RETURN(r.factor, RopeNumber(rope, where, "factor", double(r.max_positions) / original));
  SHEARS_ASSIGN_OR_RETURN(double given, RopeNumber(rope, where, "attention_factor", -1.0));
  r.attention_factor = given >= 0.0    ? given
                       : r.factor <= 1.0 ? 1.0
                                         : std::sqrt(1.0 + std::log(r.factor) / std::log(original));
  return absl::OkStatus();
}

// One rotary schedule: `rope` (a rope_scaling or rope_parameters object, `where` naming it for
// messages) with `theta` when the object has no rope_theta of its own, for the model `m` whose
// config.json is `c`.
absl::StatusOr<RopeConfig> ParseRopeObject(const nlohmann::json& rope, const std::string& where, double theta,
                                           const nlohmann::json& c, const ModelConfig& m) {
  RopeConfig r;
  r.max_positions = m.rope.max_positions;
  SHEARS_ASSIGN_OR_RETURN(r.theta, RopeNumber(rope, where, "rope_theta", theta));
  const nlohmann::json type = rope.value("rope_type", rope.value("type", nlohmann::json("default")));
  const std::string name = type.is_string() ? type.get<std::string>() : "";
  const std::map<std::string, RopeConfig::Type> types = {{"default", RopeConfig::Type::kDefault},
                                                         {"linear", RopeConfig::Type::kLinear},
                                                         {"dynamic", RopeConfig::Type::kDynamic},
                                                         {"yarn", RopeConfig::Type::kYarn},
                                                         {"llama3", RopeConfig::Type::kLlama3},
                                                         {"longrope", RopeConfig::Type::kLongRope}};
  auto known = types.find(name);
  if (known == types.end()) {
    return Unsupported(where + ".rope_type", Quoted(type), "default, linear, dynamic, yarn, llama3, longrope");
  }
  r.type = known->second;
  if (r.type == RopeConfig::Type::kDefault) return r;
  if (r.type == RopeConfig::Type::kLongRope) {
    SHEARS_RETURN_IF_ERROR(ParseLongRope(rope, where, c, m, r));
    return r;
  }
  SHEARS_ASSIGN_OR_RETURN(r.factor, RopeNumber(rope, where, "factor", std::nullopt));
  if (!(r.factor >= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", where, ".factor must be at least 1, got ", r.factor));
  }
  if (r.type == RopeConfig::Type::kLlama3) {
    SHEARS_ASSIGN_OR_RETURN(r.low_freq_factor, RopeNumber(rope, where, "low_freq_factor", std::nullopt));
    SHEARS_ASSIGN_OR_RETURN(r.high_freq_factor, RopeNumber(rope, where, "high_freq_factor", std::nullopt));
    SHEARS_ASSIGN_OR_RETURN(double original, RopeNumber(rope, where, "original_max_position_embeddings", std::nullopt));
    r.original_max_positions = static_cast<int64_t>(original);
    if (!(r.high_freq_factor > r.low_freq_factor) || r.original_max_positions <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("config.json: ", where, " needs high_freq_factor > low_freq_factor ",
                                                     "and a positive original_max_position_embeddings"));
    }
  }
  if ((r.type == RopeConfig::Type::kDynamic || r.type == RopeConfig::Type::kYarn) && r.max_positions <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: max_position_embeddings is required with ", where, ".rope_type '", name, "'"));
  }
  if (r.type == RopeConfig::Type::kYarn) {
    SHEARS_ASSIGN_OR_RETURN(double original, RopeNumber(rope, where, "original_max_position_embeddings",
                                                        static_cast<double>(r.max_positions)));
    r.original_max_positions = static_cast<int64_t>(original);
    // Null or 0 take the paper's defaults, as Hugging Face's `or` does.
    SHEARS_ASSIGN_OR_RETURN(r.beta_fast, RopeNumber(rope, where, "beta_fast", 0.0));
    SHEARS_ASSIGN_OR_RETURN(r.beta_slow, RopeNumber(rope, where, "beta_slow", 0.0));
    if (r.beta_fast == 0.0) r.beta_fast = 32.0;
    if (r.beta_slow == 0.0) r.beta_slow = 1.0;
    if (auto t = rope.find("truncate"); t != rope.end() && t->is_boolean()) r.truncate = t->get<bool>();
    auto mscale = [](double scale, double m) { return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    SHEARS_ASSIGN_OR_RETURN(double given, RopeNumber(rope, where, "attention_factor", -1.0));
    SHEARS_ASSIGN_OR_RETURN(double ms, RopeNumber(rope, where, "mscale", 0.0));
    SHEARS_ASSIGN_OR_RETURN(double ms_all, RopeNumber(rope, where, "mscale_all_dim", 0.0));
    r.attention_factor = given >= 0.0                ? given
                         : (ms != 0.0 && ms_all != 0.0) ? mscale(r.factor, ms) / mscale(r.factor, ms_all)
                                                      : mscale(r.factor, 1.0);
  }
  return r;
}

absl::Status CheckFullRotary(const nlohmann::json& c) {
  if (double partial = OptionalNumber(c, "partial_rotary_factor", 1.0); partial != 1.0) {
    return Unsupported("partial_rotary_factor", nlohmann::json(partial).dump(), "1");
  }
  return absl::OkStatus();
}

// Within max_position_embeddings every version of Hugging Face computes dynamic NTK as plain
// RoPE; past it, versions disagree. Windows are held to it (JobDatasets reads max_positions).
void HoldDynamicRopeToItsContext(const RopeConfig& rope, ModelConfig& m) {
  if (rope.type == RopeConfig::Type::kDynamic) m.max_positions = rope.max_positions;
}

// The leading int(head_dim · partial_rotary_factor) dimensions of each head rotate and the rest
// pass through (Phi-4-mini: 0.75), the factor from config.json or, as transformers 5 writes it,
// from rope_parameters.
absl::Status ParsePartialRotary(const nlohmann::json& c, const nlohmann::json& rope, ModelConfig& m) {
  const double partial = OptionalNumber(rope, "partial_rotary_factor", OptionalNumber(c, "partial_rotary_factor", 1.0));
  m.rotary_dim = static_cast<int64_t>(static_cast<double>(m.head_dim) * partial);  // Python's int() truncates too
  if (!(partial > 0.0 && partial <= 1.0) || m.rotary_dim < 2 || m.rotary_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: partial_rotary_factor ", partial, " leaves ",
                                                   m.rotary_dim, " of the ", m.head_dim,
                                                   " dimensions of a head to rotate; it must be in (0, 1] and leave "
                                                   "an even number of at least 2"));
  }
  return absl::OkStatus();
}

// Phi-3 computes rope types default and longrope, and reads su and yarn as longrope's old names.
absl::Status ParsePhi3RopeType(nlohmann::json& rope, const std::string& where) {
  auto type = rope.find(rope.contains("rope_type") ? "rope_type" : "type");
  if (type == rope.end() || type->is_null()) return absl::OkStatus();
  if (*type == "su" || *type == "yarn") {
    rope["rope_type"] = "longrope";
  } else if (*type != "default" && *type != "longrope") {
    return Unsupported(where + ".rope_type", Quoted(*type), "default, longrope (su, yarn: its old names)");
  }
  return absl::OkStatus();
}

// rope_scaling (with rope_theta beside it) or, as newer configs write it, rope_parameters.
absl::Status ParseRope(const nlohmann::json& c, ModelConfig& m, double default_theta) {
  std::string where = "rope_scaling";
  nlohmann::json rope = nlohmann::json::object();
  if (auto p = c.find("rope_parameters"); p != c.end() && p->is_object()) {
    rope = *p, where = "rope_parameters";
  } else if (auto s = c.find("rope_scaling"); s != c.end() && !s->is_null()) {
    if (!s->is_object()) return absl::InvalidArgumentError("config.json: rope_scaling must be an object or null");
    rope = *s;
  }
  if (m.family == Family::kPhi3) {
    SHEARS_RETURN_IF_ERROR(ParsePartialRotary(c, rope, m));
    SHEARS_RETURN_IF_ERROR(ParsePhi3RopeType(rope, where));
  } else {
    SHEARS_RETURN_IF_ERROR(CheckFullRotary(c));
  }
  SHEARS_ASSIGN_OR_RETURN(m.rope, ParseRopeObject(rope, where, OptionalNumber(c, "rope_theta", default_theta), c, m));
  HoldDynamicRopeToItsContext(m.rope, m);
  return absl::OkStatus();
}

// layer_types when the config lists them, each full_attention or sliding_attention; false when absent.
absl::StatusOr<bool> ParseLayerTypes(const nlohmann::json& c, const ModelConfig& m, std::vector<bool>& sliding) {
  auto types = c.find("layer_types");
  if (types == c.end() || types->is_null()) return false;
  if (!types->is_array() || static_cast<int64_t>(types->size()) != m.layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: layer_types must list one type for each of the ", m.layers, " blocks"));
  }
  sliding.assign(m.layers, false);
  for (int64_t b = 0; b < m.layers; ++b) {
    const auto& t = (*types)[b];
    if (t != "full_attention" && t != "sliding_attention") {
      return Unsupported(absl::StrCat("layer_types[", b, "]"), Quoted(t), "full_attention, sliding_attention");
    }
    sliding[b] = t == "sliding_attention";
  }
  return true;
}

// The sliding blocks see `window` positions back (0: all).
void SetWindows(const std::vector<bool>& sliding, int64_t window, ModelConfig& m) {
  m.block_sliding = sliding;
  m.block_window.assign(m.layers, 0);
  for (int64_t b = 0; b < m.layers; ++b) {
    if (sliding[b]) m.block_window[b] = window;
  }
}

// Which blocks attend through a sliding window: Mistral's every block; Qwen2's and Qwen3's those
// layer_types marks (or, without it, the blocks from max_window_layers on), and only with
// use_sliding_window.
absl::Status ParseWindows(const nlohmann::json& c, ModelConfig& m) {
  int64_t window = 0;
  auto sliding = c.find("sliding_window");
  const bool has_window = sliding != c.end() && !sliding->is_null();
  if (m.model_type == "mistral") {
    if (!has_window) return absl::OkStatus();
    SHEARS_ASSIGN_OR_RETURN(window, PositiveInt(c, "sliding_window"));
    SetWindows(std::vector<bool>(m.layers, true), window, m);
    return absl::OkStatus();
  }
  if (m.model_type != "qwen2" && m.model_type != "qwen3") return absl::OkStatus();
  if (OptionalBool(c, "use_sliding_window", false)) {
    SHEARS_ASSIGN_OR_RETURN(window, OptionalInt(c, "sliding_window", 4096));
  }
  std::vector<bool> sliding_layer(m.layers, false);
  SHEARS_ASSIGN_OR_RETURN(bool listed, ParseLayerTypes(c, m, sliding_layer));
  if (!listed) {
    int64_t full = 28;
    if (auto it = c.find("max_window_layers"); it != c.end() && !it->is_null()) {
      if (!it->is_number_integer() || it->get<int64_t>() < 0) {
        return absl::InvalidArgumentError("config.json: max_window_layers must be a non-negative integer");
      }
      full = it->get<int64_t>();
    }
    for (int64_t b = full; b < m.layers; ++b) sliding_layer[b] = true;
  }
  if (window > 0) SetWindows(sliding_layer, window, m);
  return absl::OkStatus();
}

// The shape of every Llama-like decoder: widths, counts and heads; a mixture of experts refused.
absl::Status ParseDecoderShape(const nlohmann::json& c, ModelConfig& m, int64_t default_head_dim) {
  for (const char* experts : {"num_local_experts", "num_experts", "n_routed_experts"}) {
    if (auto it = c.find(experts); it != c.end() && it->is_number_integer() && it->get<int64_t>() > 0) {
      return Unsupported(experts, it->dump(), "dense models; mixtures of experts are not built");
    }
  }
  SHEARS_ASSIGN_OR_RETURN(m.hidden, PositiveInt(c, "hidden_size"));
  SHEARS_ASSIGN_OR_RETURN(m.layers, PositiveInt(c, "num_hidden_layers"));
  SHEARS_ASSIGN_OR_RETURN(m.heads, PositiveInt(c, "num_attention_heads"));
  if (m.model_type == kNemotronNasType) {
    SHEARS_RETURN_IF_ERROR(ParseBlockConfigs(c, m));  // each block's KV heads and FFN width
  } else {
    SHEARS_ASSIGN_OR_RETURN(m.ffn, PositiveInt(c, "intermediate_size"));
    SHEARS_ASSIGN_OR_RETURN(m.kv_heads, OptionalInt(c, "num_key_value_heads", m.heads));
  }
  SHEARS_ASSIGN_OR_RETURN(m.head_dim, OptionalInt(c, "head_dim", default_head_dim > 0 ? default_head_dim : m.hidden / m.heads));
  SHEARS_ASSIGN_OR_RETURN(m.vocab, PositiveInt(c, "vocab_size"));
  SHEARS_ASSIGN_OR_RETURN(m.rope.max_positions, OptionalInt(c, "max_position_embeddings", 0));
  if (m.kv_heads > 0 && m.heads % m.kv_heads != 0) {
    return absl::InvalidArgumentError("config.json: num_attention_heads must be a multiple of num_key_value_heads");
  }
  if (m.head_dim % 2 != 0) return absl::InvalidArgumentError("config.json: the head dimension must be even for RoPE");
  m.rotary_dim = m.head_dim;
  m.norm_eps = OptionalNumber(c, "rms_norm_eps", 1e-6);
  return absl::OkStatus();
}

// Llama and the families of its shape: Mistral, Qwen2 (Qwen2.5), Qwen3, and NVIDIA's Nemotron-NAS
// (Llama's computation with each block shaped by block_configs, nemotron_nas.h).
absl::Status ParseLlama(const nlohmann::json& c, ModelConfig& m) {
  m.family = Family::kLlama;
  // Qwen3's configuration class defaults head_dim to 128, the others to hidden / heads.
  SHEARS_RETURN_IF_ERROR(ParseDecoderShape(c, m, m.model_type == "qwen3" ? 128 : 0));
  if (auto act = c.find("hidden_act"); act != c.end() && *act != "silu") return Unsupported("hidden_act", Quoted(*act), "silu");
  m.tie_embeddings = OptionalBool(c, "tie_word_embeddings", false);
  if (m.model_type == "qwen2") {
    m.qkv_bias = true;
  } else if (m.model_type != "mistral") {
    m.qkv_bias = m.o_bias = OptionalBool(c, "attention_bias", false);
  }
  if (m.model_type == "llama" || m.model_type == kNemotronNasType) m.mlp_bias = OptionalBool(c, "mlp_bias", false);
  m.qk_norm = m.model_type == "qwen3";
  SHEARS_RETURN_IF_ERROR(ParseRope(c, m, 10000.0));
  return ParseWindows(c, m);
}

// A soft cap: a positive number, or null / absent for none (`fallback` when absent).
absl::StatusOr<double> SoftCap(const nlohmann::json& c, const std::string& key, double fallback) {
  auto it = c.find(key);
  if (it == c.end()) return fallback;
  if (it->is_null()) return 0.0;
  if (!it->is_number() || it->get<double>() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", key, " must be a positive number or null"));
  }
  return it->get<double>();
}

// Gemma 3's two schedules: rope_parameters by layer type (newer configs), or rope_theta with
// rope_scaling for the full blocks and rope_local_base_freq (plain RoPE) for the sliding ones.
absl::Status ParseGemma3Rope(const nlohmann::json& c, ModelConfig& m) {
  SHEARS_RETURN_IF_ERROR(CheckFullRotary(c));
  const double theta = OptionalNumber(c, "rope_theta", 1e6), local = OptionalNumber(c, "rope_local_base_freq", 1e4);
  auto by_type = c.find("rope_parameters");
  if (by_type != c.end() && by_type->is_object() &&
      (by_type->contains("full_attention") || by_type->contains("sliding_attention"))) {
    auto part = [&](const char* type) {
      auto it = by_type->find(type);
      return it != by_type->end() && it->is_object() ? *it : nlohmann::json::object();
    };
    SHEARS_ASSIGN_OR_RETURN(m.rope,
                            ParseRopeObject(part("full_attention"), "rope_parameters.full_attention", theta, c, m));
    SHEARS_ASSIGN_OR_RETURN(m.sliding_rope, ParseRopeObject(part("sliding_attention"),
                                                            "rope_parameters.sliding_attention", local, c, m));
  } else {
    SHEARS_RETURN_IF_ERROR(ParseRope(c, m, 1e6));
    m.sliding_rope = RopeConfig{};
    m.sliding_rope->theta = local;
  }
  HoldDynamicRopeToItsContext(*m.sliding_rope, m);
  HoldDynamicRopeToItsContext(m.rope, m);
  return absl::OkStatus();
}

// Gemma 2 and Gemma 3 (text): RMSNorm by 1 + weight, embeddings scaled by √hidden, a GELU-tanh
// gate, norms after attention and around the MLP, query_pre_attn_scalar, soft caps, and
// sliding blocks by layer_types or, without it, by Gemma 2's alternation (0, 2, 4, … slide) or
// Gemma 3's sliding_window_pattern (every pattern-th block attends fully).
absl::Status ParseGemma(const nlohmann::json& c, ModelConfig& m) {
  m.family = Family::kGemma;
  const bool gemma3 = m.model_type == "gemma3_text";
  SHEARS_RETURN_IF_ERROR(ParseDecoderShape(c, m, 256));
  // The Gemma classes read hidden_activation; an older hidden_act beside it is not read.
  if (auto act = c.find("hidden_activation"); act != c.end() && *act != "gelu_pytorch_tanh") {
    return Unsupported("hidden_activation", Quoted(*act), "gelu_pytorch_tanh");
  }
  if (OptionalBool(c, "use_bidirectional_attention", false)) {
    return Unsupported("use_bidirectional_attention", "true", "false");
  }
  m.tie_embeddings = OptionalBool(c, "tie_word_embeddings", true);
  m.qkv_bias = m.o_bias = OptionalBool(c, "attention_bias", false);
  m.qk_norm = gemma3;
  m.norm_offset = 1.0;
  m.embed_scale = std::sqrt(static_cast<double>(m.hidden));
  const double scalar = OptionalNumber(c, "query_pre_attn_scalar", 256.0);
  if (!(scalar > 0)) return absl::InvalidArgumentError("config.json: query_pre_attn_scalar must be positive");
  m.attn_scale = 1.0 / std::sqrt(scalar);
  SHEARS_ASSIGN_OR_RETURN(m.final_softcap, SoftCap(c, "final_logit_softcapping", gemma3 ? 0.0 : 30.0));
  SHEARS_ASSIGN_OR_RETURN(m.attn_softcap, SoftCap(c, "attn_logit_softcapping", gemma3 ? 0.0 : 50.0));
  if (gemma3 && m.attn_softcap > 0) {
    // Gemma 3's attention does not apply it in Hugging Face's code, though the config may name it.
    return Unsupported("attn_logit_softcapping", nlohmann::json(m.attn_softcap).dump(), "null for gemma3_text");
  }
  std::vector<bool> sliding(m.layers, false);
  SHEARS_ASSIGN_OR_RETURN(bool listed, ParseLayerTypes(c, m, sliding));
  if (!listed) {
    int64_t pattern = 2;
    if (gemma3) {
      SHEARS_ASSIGN_OR_RETURN(pattern, OptionalInt(c, "sliding_window_pattern", 6));
    }
    for (int64_t b = 0; b < m.layers; ++b) sliding[b] = (b + 1) % pattern != 0;
  }
  SHEARS_ASSIGN_OR_RETURN(int64_t window, OptionalInt(c, "sliding_window", 4096));
  auto null_window = c.find("sliding_window");
  if (null_window != c.end() && null_window->is_null()) window = 0;
  SetWindows(sliding, window, m);
  if (gemma3) return ParseGemma3Rope(c, m);
  return ParseRope(c, m, 10000.0);
}

// Phi-3 (also Phi-3.5-mini, Phi-4 and Phi-4-mini, which share its model_type): Llama's
// computation, with q, k and v stored as one qkv_proj and gate and up as one gate_up_proj
// (model/phi3.h), partial rotary, LongRoPE, and sliding_window on every block when set.
absl::Status ParsePhi3(const nlohmann::json& c, ModelConfig& m) {
  m.family = Family::kPhi3;
  SHEARS_RETURN_IF_ERROR(ParseDecoderShape(c, m, 0));
  if (m.rope.max_positions == 0) m.rope.max_positions = 4096;  // Phi3Config's defaults
  m.norm_eps = OptionalNumber(c, "rms_norm_eps", 1e-5);
  if (auto act = c.find("hidden_act"); act != c.end() && *act != "silu") return Unsupported("hidden_act", Quoted(*act), "silu");
  m.tie_embeddings = OptionalBool(c, "tie_word_embeddings", false);
  if (auto window = c.find("sliding_window"); window != c.end() && !window->is_null()) {
    SHEARS_ASSIGN_OR_RETURN(int64_t positions, PositiveInt(c, "sliding_window"));
    SetWindows(std::vector<bool>(m.layers, true), positions, m);
  }
  return ParseRope(c, m, 10000.0);
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
  if (m.model_type == "llama" || m.model_type == "mistral" || m.model_type == "qwen2" || m.model_type == "qwen3" ||
      m.model_type == kNemotronNasType) {
    st = ParseLlama(config, m);
  } else if (m.model_type == "gemma2" || m.model_type == "gemma3_text") {
    st = ParseGemma(config, m);
  } else if (m.model_type == "phi3") {
    st = ParsePhi3(config, m);
  } else if (m.model_type == "gpt2") {
    st = ParseGpt2(config, m);
  } else if (m.model_type == "opt") {
    st = ParseOpt(config, m);
  } else {
    return Unsupported("model_type", Quoted(*type), kSupportedModelTypes);
  }
  if (!st.ok()) return st;
  if (auto sizes = config.find(kFfnSizesKey); sizes != config.end() && m.model_type != kNemotronNasType) {
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
  if (m.hidden % m.heads != 0 && (m.family == Family::kGpt2 || m.family == Family::kOpt)) {
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

nlohmann::json ConfigWithBlocks(const nlohmann::json& config, const ModelConfig& parsed, const std::vector<int>& kept,
                                const std::function<std::string(int)>& block_prefix) {
  nlohmann::json out = config;
  out[NumBlocksKey(parsed.family)] = kept.size();
  for (const char* listed : {"layer_types", kFfnSizesKey, "block_configs"}) {
    auto it = config.find(listed);
    if (it == config.end() || !it->is_array() || static_cast<int64_t>(it->size()) != parsed.layers) continue;
    nlohmann::json entries = nlohmann::json::array();
    for (int b : kept) entries.push_back((*it)[b]);
    out[listed] = entries;
  }
  // Gemma's pattern follows the block index: the kept blocks' types are written out, which
  // Hugging Face then reads instead of the pattern.
  if (parsed.family == Family::kGemma && (!out.contains("layer_types") || out["layer_types"].is_null())) {
    nlohmann::json types = nlohmann::json::array();
    for (int b : kept) types.push_back(parsed.SlidingOf(b) ? "sliding_attention" : "full_attention");
    out["layer_types"] = types;
  }
  // Qwen2 and Qwen3 without layer_types: the first max_window_layers blocks attend fully (28 when
  // the key is absent), so the count is of the kept ones among them, written out.
  if (parsed.model_type == "qwen2" || parsed.model_type == "qwen3") {
    int64_t full = 28;
    if (auto it = config.find("max_window_layers"); it != config.end() && it->is_number_integer()) full = it->get<int64_t>();
    out["max_window_layers"] = std::count_if(kept.begin(), kept.end(), [&](int b) { return b < full; });
  }
  if (auto ranks = config.find(kLowRankKey); ranks != config.end() && ranks->is_object()) {
    nlohmann::json renamed = nlohmann::json::object();
    for (size_t i = 0; i < kept.size(); ++i) {
      const std::string from = block_prefix(kept[i]), to = block_prefix(static_cast<int>(i));
      for (const auto& [name, rank] : ranks->items()) {
        if (name.rfind(from, 0) == 0) renamed[to + name.substr(from.size())] = rank;
      }
    }
    out[kLowRankKey] = renamed;
  }
  return out;
}

}  // namespace shears::engine
