#include "worker/engine/model/layers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace shears::engine {

torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * weight;
}

torch::Tensor LayerNorm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, double eps) {
  return torch::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

torch::Tensor MultiplyByWeight(const torch::Tensor& x, const TensorMap& tensors, const std::string& name,
                               bool stored_transposed) {
  if (auto w = tensors.find(name); w != tensors.end()) {
    return stored_transposed ? x.matmul(w->second) : torch::linear(x, w->second);
  }
  const FactorNames factors = FactorNamesOf(name);
  return torch::linear(torch::linear(x, tensors.at(factors.v)), tensors.at(factors.u));
}

torch::Tensor Linear(const torch::Tensor& x, const TensorMap& tensors, const std::string& name,
                     const LinearInputs* observe) {
  if (observe != nullptr) (*observe)(name, x);
  const std::string bias_name = name.substr(0, name.rfind('.')) + ".bias";
  auto bias = tensors.find(bias_name);
  if (tensors.count(name) != 0) {
    return torch::linear(x, tensors.at(name), bias == tensors.end() ? torch::Tensor() : bias->second);
  }
  auto y = MultiplyByWeight(x, tensors, name, /*stored_transposed=*/false);
  return bias == tensors.end() ? y : y + bias->second;
}

torch::Tensor GeluNew(const torch::Tensor& x) {
  return 0.5 * x * (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * torch::pow(x, 3.0))));
}

torch::Tensor SoftCap(const torch::Tensor& x, double cap) { return torch::tanh(x / cap) * cap; }

namespace {

// Queries a block of `CausalAttention` takes at once: big enough that the products are more than
// their call overhead, small enough that a block's scores stay in cache. Measured here (two cores,
// 8 windows of 256 tokens at head dim 16; one of 4096 at head dim 128): 32 queries for head dim 16,
// 128 for 64 and more.
int64_t QueryBlock(int64_t head_dim) { return std::clamp<int64_t>(2 * head_dim, 32, 128); }

// The additive mask of `queries` consecutive positions over `keys` consecutive keys, the first
// query at key offset `offset`: -inf where a key is after the query, or `window` or more before it.
torch::Tensor BlockMask(int64_t queries, int64_t keys, int64_t offset, int64_t window, const torch::TensorOptions& options) {
  const auto blocked = torch::full({queries, keys}, -std::numeric_limits<float>::infinity(), options);
  auto mask = blocked.triu(offset + 1);
  if (window > 0) mask = mask + blocked.tril(offset - window);
  return mask;
}

}  // namespace

torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                              int64_t window, double softcap) {
  const int64_t batch = q.size(0), heads = q.size(1), kv_heads = k.size(1), length = q.size(2);
  const int64_t dim = q.size(3), value_dim = v.size(3), group = heads / kv_heads, rows = batch * kv_heads;
  // One block of queries at a time, over the keys it can see: the products and the softmax skip
  // the masked half of the [T, T] scores, and the scores in flight stay within kScoreBudget floats
  // (at least one row's) however long the window. The `group` heads that share a key-value head
  // are stacked into one product, so k and v are never repeated.
  constexpr int64_t kScoreBudget = int64_t{1} << 20;  // floats: 4 MiB
  const auto queries = (q * scale).reshape({rows, group, length, dim});
  const auto keys = k.reshape({rows, length, dim});
  const auto values = v.reshape({rows, length, value_dim});
  auto out = torch::empty({rows, group, length, value_dim}, q.options());
  const int64_t span = QueryBlock(dim);
  for (int64_t start = 0; start < length; start += span) {
    const int64_t end = std::min(start + span, length), count = end - start;
    const int64_t first = window > 0 ? std::max<int64_t>(0, start - window + 1) : 0, seen = end - first;
    const auto mask = BlockMask(count, seen, start - first, window, q.options()).repeat({group, 1});
    const int64_t chunk = std::max<int64_t>(1, kScoreBudget / (group * count * seen));
    for (int64_t r = 0; r < rows; r += chunk) {
      const int64_t stop = std::min(r + chunk, rows);
      const auto qi = queries.slice(0, r, stop).slice(2, start, end).reshape({stop - r, group * count, dim});
      const auto ki = keys.slice(0, r, stop).slice(1, first, end).transpose(1, 2);
      auto scores = softcap > 0 ? SoftCap(torch::bmm(qi, ki), softcap) + mask
                                : torch::baddbmm(mask.expand({stop - r, group * count, seen}), qi, ki);
      out.slice(0, r, stop).slice(2, start, end).copy_(
          torch::bmm(torch::softmax(scores, -1), values.slice(0, r, stop).slice(1, first, end))
              .view({stop - r, group, count, value_dim}));
    }
  }
  return out.view({batch, heads, length, value_dim}).transpose(1, 2).reshape({batch, length, -1});
}

torch::Tensor SplitHeads(const torch::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, -1}).transpose(1, 2);
}

torch::Tensor Activate(MlpLayout::Activation activation, const torch::Tensor& x) {
  switch (activation) {
    case MlpLayout::Activation::kSilu:
      return torch::silu(x);
    case MlpLayout::Activation::kRelu:
      return torch::relu(x);
    case MlpLayout::Activation::kGeluNew:
      return GeluNew(x);
  }
  return x;
}

}  // namespace shears::engine
