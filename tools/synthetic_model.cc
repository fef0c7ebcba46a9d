#include "tools/synthetic_model.h"

#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/safetensors.h"
#include "worker/engine/io/tensor_io.h"

namespace shears::tools {
namespace fs = std::filesystem;

namespace {

using engine::DType;
using engine::TensorDecl;

std::vector<TensorDecl> Declarations(const SyntheticLlama& s) {
  const DType dtype = s.bf16 ? DType::kBF16 : DType::kF32;
  const int64_t d = s.hidden, f = s.ffn, kv = int64_t(s.hidden) / s.heads * (s.kv_heads ? s.kv_heads : s.heads);
  std::vector<TensorDecl> decls = {{"model.embed_tokens.weight", dtype, {s.vocab, d}},
                                   {"model.norm.weight", dtype, {d}},
                                   {"lm_head.weight", dtype, {s.vocab, d}}};
  for (int b = 0; b < s.blocks; ++b) {
    const std::string p = absl::StrCat("model.layers.", b, ".");
    decls.push_back({p + "self_attn.q_proj.weight", dtype, {d, d}});
    decls.push_back({p + "self_attn.k_proj.weight", dtype, {kv, d}});
    decls.push_back({p + "self_attn.v_proj.weight", dtype, {kv, d}});
    decls.push_back({p + "self_attn.o_proj.weight", dtype, {d, d}});
    decls.push_back({p + "mlp.gate_proj.weight", dtype, {f, d}});
    decls.push_back({p + "mlp.up_proj.weight", dtype, {f, d}});
    decls.push_back({p + "mlp.down_proj.weight", dtype, {d, f}});
    decls.push_back({p + "input_layernorm.weight", dtype, {d}});
    decls.push_back({p + "post_attention_layernorm.weight", dtype, {d}});
  }
  return decls;
}

int64_t Bytes(const TensorDecl& decl) {
  int64_t n = static_cast<int64_t>(engine::DTypeSize(decl.dtype));
  for (int64_t size : decl.shape) n *= size;
  return n;
}

// The declarations cut into consecutive shards of at most `limit` bytes (one shard when 0).
std::vector<std::vector<TensorDecl>> Shards(const std::vector<TensorDecl>& decls, int64_t limit) {
  std::vector<std::vector<TensorDecl>> shards(1);
  int64_t bytes = 0;
  for (const auto& decl : decls) {
    if (limit > 0 && !shards.back().empty() && bytes + Bytes(decl) > limit) {
      shards.emplace_back();
      bytes = 0;
    }
    shards.back().push_back(decl);
    bytes += Bytes(decl);
  }
  return shards;
}

}  // namespace

absl::Status WriteSyntheticLlama(const SyntheticLlama& s, const std::string& dir) {
  SHEARS_RETURN_IF_ERROR(MakeDirectories(dir));
  nlohmann::json config = {{"model_type", "llama"},         {"hidden_size", s.hidden},      {"intermediate_size", s.ffn},
                           {"num_hidden_layers", s.blocks}, {"num_attention_heads", s.heads},
                           {"num_key_value_heads", s.kv_heads ? s.kv_heads : s.heads}, {"vocab_size", s.vocab},
                           {"rms_norm_eps", 1e-5},          {"tie_word_embeddings", false},
                           {"torch_dtype", s.bf16 ? "bfloat16" : "float32"}};
  SHEARS_RETURN_IF_ERROR(WriteFileAtomically((fs::path(dir) / "config.json").string(), config.dump(2)));

  const auto shards = Shards(Declarations(s), s.shard_bytes);
  nlohmann::json weight_map = nlohmann::json::object();
  int64_t total = 0;
  torch::manual_seed(s.seed);
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name = shards.size() == 1 && s.shard_bytes == 0
                                 ? "model.safetensors"
                                 : absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    SHEARS_ASSIGN_OR_RETURN(auto writer, engine::SafetensorsWriter::Create((fs::path(dir) / name).string(),
                                                                            shards[i], {{"format", "pt"}}));
    for (const auto& decl : shards[i]) {
      // Norm weights are ones, as at initialisation; matrices are scaled so activations stay O(1).
      torch::Tensor t = decl.shape.size() == 1 ? torch::ones(decl.shape)
                                               : torch::randn(decl.shape) / std::sqrt(double(decl.shape.back()));
      torch::Tensor holder;
      SHEARS_RETURN_IF_ERROR(writer->Write(decl.name, engine::TensorBytes(t.to(engine::ToScalarType(decl.dtype)), holder)));
      weight_map[decl.name] = name;
      total += Bytes(decl);
    }
    SHEARS_RETURN_IF_ERROR(writer->Close());
  }
  if (s.shard_bytes == 0) return absl::OkStatus();
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  return WriteFileAtomically((fs::path(dir) / engine::kIndexFile).string(), index.dump(2));
}

}  // namespace shears::tools
