#pragma once
// The attention heads of a Llama-family block as grouped-query attention shares them: KV head k
// serves query heads k·g … k·g + g − 1 (g = heads / KV heads, Hugging Face's repeat_kv). Pruning
// removes or merges whole groups, so every query head keeps the K/V it was trained with.

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "worker/engine/io/model_config.h"
#include "worker/engine/model/architecture.h"

namespace shears::engine {

// The projections' names within a block (Llama's, which Gemma and Phi-3's parts share).
inline constexpr char kQProj[] = "self_attn.q_proj.weight", kKProj[] = "self_attn.k_proj.weight",
                      kVProj[] = "self_attn.v_proj.weight", kOProj[] = "self_attn.o_proj.weight",
                      kQBias[] = "self_attn.q_proj.bias", kKBias[] = "self_attn.k_proj.bias",
                      kVBias[] = "self_attn.v_proj.bias";

struct HeadGroups {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  int64_t group() const { return heads / kv_heads; }
};
HeadGroups HeadGroupsOf(const ModelConfig& config, int block);

// The rows of q_proj (and columns of o_proj) of the KV groups `kept`, ascending.
torch::Tensor QueryRows(const HeadGroups& g, const std::vector<int64_t>& kept);
// The rows of k_proj and v_proj of the KV heads `kept`, ascending.
torch::Tensor KvRows(const HeadGroups& g, const std::vector<int64_t>& kept);

// For each KV group of `block`'s tensors, the norm of every weight and bias entry it owns (its
// query, key and value rows, its columns of o_proj).
torch::Tensor GroupMagnitudes(const TensorMap& block, const HeadGroups& g);

// For each KV group, the squared norm of its query heads' contribution to the attention output
// over the calibration tokens, Σ_h ‖X_h W_o,hᵀ‖²: from o_proj's input Gram matrix G = XᵀX, each
// head's tr(W_o,h G_hh W_o,hᵀ).
torch::Tensor GroupActivations(const TensorMap& block, const HeadGroups& g, const torch::Tensor& o_input_gram);

}  // namespace shears::engine
