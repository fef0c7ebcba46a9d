#include "worker/engine/architecture.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

// An optional positive integer; `fallback` when absent or null.
absl::StatusOr<int64_t> OptionalInt(const nlohmann::json& config, const std::string& key, int64_t fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  return PositiveInt(config, key);
}

}  // namespace

absl::StatusOr<Architecture> Architecture::FromConfig(const nlohmann::json& config) {
  Architecture a;
  auto type = config.find("model_type");
  if (type == config.end() || !type->is_string()) {
    return absl::InvalidArgumentError("config.json: missing model_type");
  }
  a.model_type_ = type->get<std::string>();
  if (a.model_type_ == "llama") {
    SHEARS_ASSIGN_OR_RETURN(const int64_t d, PositiveInt(config, "hidden_size"));
    SHEARS_ASSIGN_OR_RETURN(const int64_t f, PositiveInt(config, "intermediate_size"));
    SHEARS_ASSIGN_OR_RETURN(const int64_t layers, PositiveInt(config, "num_hidden_layers"));
    SHEARS_ASSIGN_OR_RETURN(const int64_t heads, PositiveInt(config, "num_attention_heads"));
    SHEARS_ASSIGN_OR_RETURN(const int64_t kv_heads, OptionalInt(config, "num_key_value_heads", heads));
    SHEARS_ASSIGN_OR_RETURN(const int64_t head_dim, OptionalInt(config, "head_dim", d / heads));
    a.block_prefix_ = "model.layers.";
    a.num_blocks_ = static_cast<int>(layers);
    a.linears_ = {{"self_attn.q_proj.weight", {heads * head_dim, d}},
                  {"self_attn.k_proj.weight", {kv_heads * head_dim, d}},
                  {"self_attn.v_proj.weight", {kv_heads * head_dim, d}},
                  {"self_attn.o_proj.weight", {d, heads * head_dim}},
                  {"mlp.gate_proj.weight", {f, d}},
                  {"mlp.up_proj.weight", {f, d}},
                  {"mlp.down_proj.weight", {d, f}}};
  } else if (a.model_type_ == "gpt2") {
    SHEARS_ASSIGN_OR_RETURN(const int64_t d, PositiveInt(config, "n_embd"));
    SHEARS_ASSIGN_OR_RETURN(const int64_t layers, PositiveInt(config, "n_layer"));
    SHEARS_ASSIGN_OR_RETURN(const int64_t f, OptionalInt(config, "n_inner", 4 * d));
    a.block_prefix_ = "transformer.h.";
    a.num_blocks_ = static_cast<int>(layers);
    a.linears_ = {{"attn.c_attn.weight", {d, 3 * d}},
                  {"attn.c_proj.weight", {d, d}},
                  {"mlp.c_fc.weight", {d, f}},
                  {"mlp.c_proj.weight", {f, d}}};
  } else {
    return absl::InvalidArgumentError(absl::StrCat("config.json: model_type '", a.model_type_,
                                                   "' is not supported (supported: llama, gpt2)"));
  }
  return a;
}

std::vector<LinearWeight> Architecture::BlockLinears(int block) const {
  std::vector<LinearWeight> out;
  for (const auto& t : linears_) {
    out.push_back({absl::StrCat(block_prefix_, block, ".", t.suffix), t.shape});
  }
  return out;
}

absl::Status Architecture::CheckWeights(const ModelDir& model) const {
  for (int b = 0; b < num_blocks_; ++b) {
    for (const auto& w : BlockLinears(b)) {
      const auto* at = model.Find(w.name);
      if (at == nullptr) {
        return absl::DataLossError(absl::StrCat(model.dir(), ": tensor ", w.name, " is missing"));
      }
      const DType dt = at->info->dtype;
      if (dt != DType::kF32 && dt != DType::kF16 && dt != DType::kBF16 && dt != DType::kF64) {
        return absl::DataLossError(absl::StrCat(BaseName(at->file->path()), ": tensor ", w.name, " has dtype ",
                                                DTypeName(dt), ", expected a floating-point type"));
      }
      if (at->info->shape != w.shape) {
        return absl::DataLossError(absl::StrCat(
            BaseName(at->file->path()), ": tensor ", w.name, " has shape [", absl::StrJoin(at->info->shape, ", "),
            "], config.json implies [", absl::StrJoin(w.shape, ", "), "]"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace shears::engine
