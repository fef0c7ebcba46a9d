#include "worker/engine/io/nemotron_nas.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shears::engine {
namespace {

// The configuration class written beside a Nemotron-NAS config.json (auto_map's AutoConfig), so
// that Hugging Face's AutoConfig reads it with trust_remote_code=True, as NVIDIA's checkpoints
// ship theirs. NVIDIA's own class cannot be used: it requires every FFN's ffn_mult, which states
// only multiples of 256. Each block's sections carry exactly the keys config.json gives them,
// because vLLM's DeciLMForCausalLM asks hasattr(ffn, "ffn_mult") and takes intermediate_size
// only when the attribute is absent.
constexpr char kConfigurationModule[] = "configuration_decilm";
constexpr char kConfigurationClass[] = R"PY("""The Nemotron-NAS (DeciLM) configuration, as Shears writes it.

A Llama whose decoder blocks each have their own attention (a number of query heads per KV head,
or none) and FFN (a width as ffn_mult or intermediate_size, or none), listed in block_configs.
Hugging Face reads it through auto_map with trust_remote_code=True; vLLM's DeciLMForCausalLM
serves the model. Each section has exactly the attributes its JSON object has: vLLM reads
intermediate_size only when the ffn section has no ffn_mult attribute.
"""
from transformers.models.llama.configuration_llama import LlamaConfig


class Section:
    """One block's attention or ffn settings, as attributes."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def to_dict(self):
        return dict(self.__dict__)


class BlockConfig:
    def __init__(self, attention, ffn):
        self.attention = attention if isinstance(attention, Section) else Section(**attention)
        self.ffn = ffn if isinstance(ffn, Section) else Section(**ffn)

    def to_dict(self):
        return {"attention": self.attention.to_dict(), "ffn": self.ffn.to_dict()}


class DeciLMConfig(LlamaConfig):
    model_type = "nemotron-nas"

    def __init__(self, block_configs=None, **kwargs):
        self.block_configs = [b if isinstance(b, BlockConfig) else BlockConfig(**b) for b in block_configs or []]
        super().__init__(**kwargs)
        # The per-block shapes stand for these.
        self.intermediate_size = None
        self.num_key_value_heads = None

    def to_dict(self):
        d = super().to_dict()
        d["block_configs"] = [b.to_dict() for b in self.block_configs]
        return d
)PY";

// NVIDIA's and vLLM's _ffn_mult_to_intermediate_size: int(2 · ffn_mult · hidden / 3) rounded up to
// a multiple of 256.
int64_t WidthOfFfnMult(double mult, int64_t hidden) {
  const auto width = static_cast<int64_t>(2.0 * mult * static_cast<double>(hidden) / 3.0);
  return (width + 255) / 256 * 256;
}

// Block `s`'s ffn section: ffn_mult when it states the width exactly (a multiple of 256, which
// every reader of the layout takes, NVIDIA's class and vLLM before its intermediate_size fallback
// too), else intermediate_size alone.
nlohmann::json FfnSection(const BlockShape& s, int64_t hidden) {
  nlohmann::json ffn = {{"no_op", s.ffn == 0}, {"replace_with_linear", false}};
  if (s.ffn == 0) {
    ffn["ffn_mult"] = nullptr;
    return ffn;
  }
  // NVIDIA's class keeps 6 decimals.
  const double mult = std::round(1.5 * static_cast<double>(s.ffn) / static_cast<double>(hidden) * 1e6) / 1e6;
  if (s.ffn % 256 == 0 && WidthOfFfnMult(mult, hidden) == s.ffn) {
    ffn["ffn_mult"] = mult;
  } else {
    ffn["intermediate_size"] = s.ffn;
  }
  return ffn;
}

absl::Status Entry(int64_t block, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: block_configs[", block, "].", what));
}

// `object`[key] as a boolean, false when absent or null.
absl::StatusOr<bool> Flag(const nlohmann::json& object, const char* key, int64_t block, const std::string& where) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return false;
  if (!it->is_boolean()) return Entry(block, absl::StrCat(where, ".", key, " must be true or false"));
  return it->get<bool>();
}

// Whether block `b`'s section `where` (attention or ffn) is a no_op; refused when it is no object
// or asks for replace_with_linear.
absl::StatusOr<bool> IsNoOp(const nlohmann::json& section, int64_t b, const std::string& where) {
  if (!section.is_object()) return Entry(b, where + " must be an object");
  SHEARS_ASSIGN_OR_RETURN(bool no_op, Flag(section, "no_op", b, where));
  if (no_op) return true;
  SHEARS_ASSIGN_OR_RETURN(bool linear, Flag(section, "replace_with_linear", b, where));
  if (linear) return Entry(b, where + ".replace_with_linear is not supported (vLLM does not serve it either)");
  return false;
}

// The number of KV heads of block `b`'s attention entry (0: no_op).
absl::StatusOr<int64_t> KvHeadsOfEntry(const nlohmann::json& attention, int64_t b, const ModelConfig& m) {
  SHEARS_ASSIGN_OR_RETURN(bool no_op, IsNoOp(attention, b, "attention"));
  if (no_op) return 0;
  for (const char* windowed : {"window_length", "num_sink_tokens"}) {
    if (auto it = attention.find(windowed); it != attention.end() && !it->is_null()) {
      return Entry(b, absl::StrCat("attention.", windowed, " is not supported (full attention only)"));
    }
  }
  auto group = attention.find("n_heads_in_group");
  if (group == attention.end() || !group->is_number_integer() || group->get<int64_t>() < 1 ||
      m.heads % group->get<int64_t>() != 0) {
    return Entry(b, absl::StrCat("attention.n_heads_in_group must be a positive divisor of num_attention_heads (",
                                 m.heads, ")"));
  }
  return m.heads / group->get<int64_t>();
}

// The FFN width of block `b`'s ffn entry (0: no_op): ffn_mult as NVIDIA's and vLLM's code turn it
// into one (int(2 · ffn_mult · hidden / 3) rounded up to a multiple of 256), else intermediate_size
// (which vLLM reads when ffn_mult is absent).
absl::StatusOr<int64_t> FfnOfEntry(const nlohmann::json& ffn, int64_t b, const ModelConfig& m) {
  SHEARS_ASSIGN_OR_RETURN(bool no_op, IsNoOp(ffn, b, "ffn"));
  if (no_op) return 0;
  if (auto mult = ffn.find("ffn_mult"); mult != ffn.end() && !mult->is_null()) {
    if (!mult->is_number() || !(mult->get<double>() > 0)) return Entry(b, "ffn.ffn_mult must be a positive number");
    return WidthOfFfnMult(mult->get<double>(), m.hidden);
  }
  auto size = ffn.find("intermediate_size");
  if (size == ffn.end() || !size->is_number_integer() || size->get<int64_t>() < 1) {
    return Entry(b, "ffn needs a positive intermediate_size or ffn_mult");
  }
  return size->get<int64_t>();
}

}  // namespace

// Llama's block with full attention, q/k/v/o biases all or none, no norm on q and k.
bool ExpressibleAsNemotronNas(const ModelConfig& m) {
  const bool llama_type = m.model_type == "llama" || m.model_type == "mistral" || m.model_type == kNemotronNasType;
  const bool windowed = std::any_of(m.block_window.begin(), m.block_window.end(), [](int64_t w) { return w > 0; });
  return m.family == Family::kLlama && llama_type && !windowed && !m.qk_norm && m.qkv_bias == m.o_bias;
}

absl::Status CheckServableShapes(const std::vector<BlockShape>& shapes) {
  auto opened = std::find_if(shapes.begin(), shapes.end(), [](const BlockShape& s) { return s.kv_heads > 0 || s.ffn > 0; });
  if (opened != shapes.end() && opened->kv_heads > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "the first block that keeps a sublayer (", opened - shapes.begin(),
      ") must keep its attention: vLLM's DeciLMForCausalLM cannot run an FFN before any attention"));
}

std::vector<BlockShape> BlockShapesOf(const ModelConfig& m) {
  std::vector<BlockShape> shapes;
  for (int b = 0; b < m.layers; ++b) shapes.push_back({m.KvHeadsOf(b), m.FfnOf(b)});
  return shapes;
}

absl::Status ParseBlockConfigs(const nlohmann::json& config, ModelConfig& m) {
  auto blocks = config.find("block_configs");
  if (blocks == config.end() || !blocks->is_array() || static_cast<int64_t>(blocks->size()) != m.layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: block_configs must list one entry for each of the ", m.layers, " blocks"));
  }
  m.block_kv_heads.clear();
  m.block_ffn.clear();
  for (int64_t b = 0; b < m.layers; ++b) {
    const auto& entry = (*blocks)[b];
    if (!entry.is_object() || !entry.contains("attention") || !entry.contains("ffn")) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.json: block_configs[", b, "] must be an object with attention and ffn"));
    }
    SHEARS_ASSIGN_OR_RETURN(int64_t kv, KvHeadsOfEntry(entry["attention"], b, m));
    SHEARS_ASSIGN_OR_RETURN(int64_t ffn, FfnOfEntry(entry["ffn"], b, m));
    m.block_kv_heads.push_back(kv);
    m.block_ffn.push_back(ffn);
  }
  m.kv_heads = *std::max_element(m.block_kv_heads.begin(), m.block_kv_heads.end());
  m.ffn = *std::max_element(m.block_ffn.begin(), m.block_ffn.end());
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ConfigWithBlockShapes(const nlohmann::json& config, const ModelConfig& parsed,
                                                     const std::vector<BlockShape>& shapes) {
  if (static_cast<int64_t>(shapes.size()) != parsed.layers || shapes.empty()) {
    return absl::InternalError("block shapes do not match the model's blocks");
  }
  nlohmann::json out = config;
  out.erase(kFfnSizesKey);
  const BlockShape first = shapes.front();
  const bool alike = std::all_of(shapes.begin(), shapes.end(), [&](const BlockShape& s) { return s == first; });
  const bool whole = std::all_of(shapes.begin(), shapes.end(), [](const BlockShape& s) { return s.ffn > 0 && s.kv_heads > 0; });
  const bool heads_alike = std::all_of(shapes.begin(), shapes.end(), [&](const BlockShape& s) { return s.kv_heads == first.kv_heads; });
  if (parsed.model_type != kNemotronNasType && whole && (alike || !ExpressibleAsNemotronNas(parsed))) {
    if (!heads_alike) {
      return absl::InvalidArgumentError(absl::StrCat("model_type ", parsed.model_type,
                                                     " has no layout for blocks with different numbers of KV heads "
                                                     "(the Nemotron-NAS layout expresses llama and mistral)"));
    }
    if (first.kv_heads != parsed.kv_heads) out["num_key_value_heads"] = first.kv_heads;
    const auto [narrowest, widest] = std::minmax_element(shapes.begin(), shapes.end(),
                                                         [](const BlockShape& a, const BlockShape& b) { return a.ffn < b.ffn; });
    out[FfnKey(parsed.family)] = widest->ffn;
    if (narrowest->ffn != widest->ffn) {
      nlohmann::json widths = nlohmann::json::array();
      for (const auto& s : shapes) widths.push_back(s.ffn);
      out[kFfnSizesKey] = widths;
    }
    return out;
  }
  if (!ExpressibleAsNemotronNas(parsed)) {
    return absl::InvalidArgumentError(absl::StrCat("model_type ", parsed.model_type,
                                                   " has no layout for removed sublayers (the Nemotron-NAS layout "
                                                   "expresses llama, and mistral without sliding windows)"));
  }
  SHEARS_RETURN_IF_ERROR(CheckServableShapes(shapes));
  nlohmann::json blocks = nlohmann::json::array();
  for (const auto& s : shapes) {
    nlohmann::json attention = {{"no_op", s.kv_heads == 0}, {"replace_with_linear", false}};
    attention["n_heads_in_group"] = s.kv_heads == 0 ? nlohmann::json(nullptr) : nlohmann::json(parsed.heads / s.kv_heads);
    blocks.push_back({{"attention", attention}, {"ffn", FfnSection(s, parsed.hidden)}});
  }
  out["architectures"] = {"DeciLMForCausalLM"};
  out["model_type"] = kNemotronNasType;
  out["auto_map"] = {{"AutoConfig", absl::StrCat(kConfigurationModule, ".DeciLMConfig")}};
  out["block_configs"] = blocks;
  out["intermediate_size"] = nullptr;
  out["num_key_value_heads"] = nullptr;
  // Llama's head dimension, explicit: the layout's readers take it from hidden / heads otherwise.
  out["head_dim"] = parsed.head_dim;
  out["attention_bias"] = parsed.qkv_bias;
  out["mlp_bias"] = parsed.mlp_bias;
  out.erase("sliding_window");
  return out;
}

std::map<std::string, std::string> LayoutFiles(const nlohmann::json& config) {
  auto map = config.find("auto_map");
  if (config.value("model_type", "") != kNemotronNasType || map == config.end() || !map->is_object() ||
      map->value("AutoConfig", "") != absl::StrCat(kConfigurationModule, ".DeciLMConfig") || map->size() != 1) {
    return {};
  }
  return {{absl::StrCat(kConfigurationModule, ".py"), kConfigurationClass}};
}

}  // namespace shears::engine
