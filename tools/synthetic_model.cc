#include "tools/synthetic_model.h"

#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/io/safetensors.h"
#include "worker/engine/io/tensor_io.h"

namespace shears::tools {

absl::Status WriteSyntheticLlama(const SyntheticLlama& s, const std::string& dir) {
  SHEARS_RETURN_IF_ERROR(MakeDirectories(dir));
  nlohmann::json config = {{"model_type", "llama"},         {"hidden_size", s.hidden},      {"intermediate_size", s.ffn},
                           {"num_hidden_layers", s.blocks}, {"num_attention_heads", s.heads},
                           {"num_key_value_heads", s.heads}, {"vocab_size", s.vocab},     {"rms_norm_eps", 1e-5},
                           {"tie_word_embeddings", false}};
  SHEARS_RETURN_IF_ERROR(WriteFileAtomically((std::filesystem::path(dir) / "config.json").string(), config.dump(2)));

  std::vector<engine::TensorDecl> decls = {{"model.embed_tokens.weight", engine::DType::kF32, {s.vocab, s.hidden}},
                                           {"model.norm.weight", engine::DType::kF32, {s.hidden}},
                                           {"lm_head.weight", engine::DType::kF32, {s.vocab, s.hidden}}};
  for (int b = 0; b < s.blocks; ++b) {
    const std::string p = absl::StrCat("model.layers.", b, ".");
    const int64_t d = s.hidden, f = s.ffn;
    for (const char* n : {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                          "self_attn.o_proj.weight"}) {
      decls.push_back({p + n, engine::DType::kF32, {d, d}});
    }
    decls.push_back({p + "mlp.gate_proj.weight", engine::DType::kF32, {f, d}});
    decls.push_back({p + "mlp.up_proj.weight", engine::DType::kF32, {f, d}});
    decls.push_back({p + "mlp.down_proj.weight", engine::DType::kF32, {d, f}});
    decls.push_back({p + "input_layernorm.weight", engine::DType::kF32, {d}});
    decls.push_back({p + "post_attention_layernorm.weight", engine::DType::kF32, {d}});
  }
  SHEARS_ASSIGN_OR_RETURN(auto writer,
                          engine::SafetensorsWriter::Create((std::filesystem::path(dir) / "model.safetensors").string(),
                                                            decls, {{"format", "pt"}}));
  torch::manual_seed(s.seed);
  for (const auto& decl : decls) {
    // Norm weights are ones, as at initialisation; matrices are scaled so activations stay O(1).
    torch::Tensor t = decl.shape.size() == 1 ? torch::ones(decl.shape)
                                             : torch::randn(decl.shape) / std::sqrt(double(decl.shape.back()));
    torch::Tensor holder;
    SHEARS_RETURN_IF_ERROR(writer->Write(decl.name, engine::TensorBytes(t, holder)));
  }
  return writer->Close();
}

}  // namespace shears::tools
