#include "worker/engine/model/layers.h"

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

torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                              int64_t window, double softcap) {
  const int64_t batch = q.size(0), heads = q.size(1), kv_heads = k.size(1), length = q.size(2);
  torch::Tensor keys = k, values = v;
  if (kv_heads != heads) {
    keys = k.repeat_interleave(heads / kv_heads, 1);
    values = v.repeat_interleave(heads / kv_heads, 1);
  }
  // One [T, T] score matrix per window and head: scaled through q, masked as the product is
  // written (baddbmm), softmaxed and applied a few heads at a time, so that each chunk's scores
  // stay in cache instead of streaming every head's through memory four times.
  constexpr int64_t kChunkScores = int64_t{1} << 18;  // floats: 1 MiB
  const int64_t rows = batch * heads;
  const auto queries = (q * scale).reshape({rows, length, q.size(3)});
  const auto keys_t = keys.reshape({rows, length, keys.size(3)}).transpose(1, 2);
  const auto vals = values.reshape({rows, length, values.size(3)});
  const auto blocked = torch::full({length, length}, -std::numeric_limits<float>::infinity(), q.options());
  auto mask = blocked.triu(1);
  if (window > 0 && window < length) mask = mask + blocked.tril(-window);
  const int64_t chunk = std::max<int64_t>(1, kChunkScores / (length * length));
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < rows; i += chunk) {
    const int64_t end = std::min(i + chunk, rows);
    const auto qi = queries.slice(0, i, end), ki = keys_t.slice(0, i, end);
    auto scores = softcap > 0 ? SoftCap(torch::bmm(qi, ki), softcap) + mask
                              : torch::baddbmm(mask.expand({end - i, length, length}), qi, ki);
    out.push_back(torch::bmm(torch::softmax(scores, -1), vals.slice(0, i, end)));
  }
  auto attended = out.size() == 1 ? out.front() : torch::cat(out, 0);
  return attended.view({batch, heads, length, values.size(3)}).transpose(1, 2).reshape({batch, length, -1});
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
