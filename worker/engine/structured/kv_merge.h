#pragma once
// Merging a block's KV heads into fewer (per-block attention-head pruning): runs of m = kv / n
// neighbouring KV heads become one, and the query heads they served share it, so the query heads
// and o_proj stay as they are and the block's KV cache shrinks m-fold.
//
// Mean pooling is the GQA paper's conversion (Ainslie et al. 2023). The fitted merge chooses each
// merged projection to keep what the attention output sees of it, per query head h served:
// - keys through the logits q_hᵀ R_δ k (RoPE's relative rotation R_δ): least squares over the
//   calibration queries' covariance, averaged over the causal offsets δ of the windows, gives
//   W = (Σ C̃_h)⁻¹ Σ C̃_h W_g(h);
// - values through o_proj's columns of the head, O_h: the error O_h Δ v of a head's output is
//   bounded by that of its values (attention averages them), and its least squares gives
//   W = (Σ O_hᵀO_h)⁻¹ Σ O_hᵀO_h W_g(h).
// The inputs' Gram matrix cancels from both normal equations, so only the queries need data.

#include <cstdint>

#include <torch/torch.h>

#include "worker/engine/io/model_config.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/structured/head_groups.h"

namespace shears::engine {

// The merged projections; a bias undefined where the block has none.
struct MergedKv {
  torch::Tensor k_weight, k_bias, v_weight, v_bias;
};

MergedKv MeanPooledKv(const TensorMap& block, const HeadGroups& g, int64_t kv_heads);

// `query_input_gram`: Σ [x, 1][x, 1]ᵀ over the calibration tokens of q_proj's input x, [hidden+1]²;
// the RoPE average runs over windows of `window` tokens with `config`'s rotary schedule for `block`.
MergedKv FittedKv(const TensorMap& block, const HeadGroups& g, int64_t kv_heads, const torch::Tensor& query_input_gram,
                  const ModelConfig& config, int block_index, int64_t window);

// The block's tensors with k and v replaced by `merged`, each merged head repeated for the
// `kv_heads` it stands for: the same attention in the block's own shapes, so that the block runs
// and is measured as its config says.
TensorMap WithMergedKv(const TensorMap& block, const MergedKv& merged, int64_t kv_heads);

}  // namespace shears::engine
