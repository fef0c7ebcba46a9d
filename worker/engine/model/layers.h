#pragma once
// The building blocks the architectures share, written as the Hugging Face models compute them.

#include <optional>

#include <torch/torch.h>

#include "worker/engine/model/architecture.h"

namespace shears::engine {

torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& weight, double eps);
torch::Tensor LayerNorm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, double eps);
// x·Wᵀ for weight `name`, stored as nn.Linear's [out, in] or, when `stored_transposed`, as GPT-2's
// Conv1D [in, out]; through its low-rank factors (x·Vᵀ·Uᵀ) when the model stores those instead.
torch::Tensor MultiplyByWeight(const torch::Tensor& x, const TensorMap& tensors, const std::string& name,
                               bool stored_transposed);
// x W^T (+ b) with nn.Linear's [out, in] weight (or its factors); the bias is taken from `tensors` when present.
// `observe`, when not null, sees x first.
torch::Tensor Linear(const torch::Tensor& x, const TensorMap& tensors, const std::string& name,
                     const LinearInputs* observe);
// GELU's tanh approximation (GPT-2's gelu_new, Gemma's gelu_pytorch_tanh).
torch::Tensor GeluNew(const torch::Tensor& x);
// The MLP's nonlinearity.
torch::Tensor Activate(MlpLayout::Activation activation, const torch::Tensor& x);

// cap · tanh(x / cap): Gemma's soft cap on attention scores and logits.
torch::Tensor SoftCap(const torch::Tensor& x, double cap);

// Causal softmax attention. q [B, H, T, hd], k and v [B, KV, T, hd] with H a multiple of KV
// (grouped-query attention). A positive `window` lets each position see only itself and the
// window - 1 positions before it (Mistral's sliding window); a positive `softcap` caps the scaled
// scores before the mask (Gemma 2). Returns [B, T, H * hd].
torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                              int64_t window = 0, double softcap = 0.0);

// [B, T, heads * hd] -> [B, heads, T, hd]
torch::Tensor SplitHeads(const torch::Tensor& x, int64_t heads);

}  // namespace shears::engine
