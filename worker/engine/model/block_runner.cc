#include "worker/engine/model/block_runner.h"

#include <algorithm>
#include <cmath>

namespace shears::engine {

BlockRunner::BlockRunner(const ModelDir& model, const Architecture& arch, torch::Device device, int64_t batch)
    : model_(model), arch_(arch), device_(device), batch_(batch) {}

const TensorMap& BlockRunner::Outer() const {
  if (!outer_) outer_ = LoadTensors(model_, "", arch_.OuterTensors(), device_);
  return *outer_;
}

torch::Tensor BlockRunner::Embed(const torch::Tensor& ids) const {
  torch::NoGradGuard no_grad;
  return arch_.Embed(Outer(), ids.to(device_));
}

TensorMap BlockRunner::LoadBlock(int block) const {
  return arch_.LoadBlock(model_, block, device_);
}

torch::Tensor BlockRunner::Run(int index, const TensorMap& block, const torch::Tensor& hidden,
                               const LinearInputs* observe, const SublayerStreams* streams) const {
  torch::NoGradGuard no_grad;
  const bool split = streams != nullptr && arch_.SplitsIntoSublayers();
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < hidden.size(0); i += batch_) {
    const auto in = hidden.slice(0, i, std::min(i + batch_, hidden.size(0)));
    if (!split) {
      out.push_back(arch_.Block(index, block, in, observe));
      continue;
    }
    const auto mid = arch_.AttentionHalf(index, block, in, observe);
    out.push_back(arch_.MlpHalf(index, block, mid, observe));
    (*streams)(in, mid, out.back());
  }
  return torch::cat(out, 0);
}

torch::Tensor BlockRunner::Logits(const torch::Tensor& hidden) const {
  torch::NoGradGuard no_grad;
  return arch_.Logits(Outer(), hidden);
}

namespace {

// Positions whose logits are made at once, within `budget` floats: a real vocabulary's logits for
// a whole batch of long windows would be gigabytes (128,256 × 2,048 × 4 bytes a window).
int64_t LogitRows(int64_t budget, int64_t vocab) { return std::max<int64_t>(1, budget / std::max<int64_t>(vocab, 1)); }

// Every position but the last of each window, as rows [N, d], and the ids they predict [N].
std::pair<torch::Tensor, torch::Tensor> Predictions(const torch::Tensor& hidden, const torch::Tensor& ids,
                                                    const torch::Device& device) {
  return {hidden.slice(1, 0, -1).reshape({-1, hidden.size(-1)}), ids.to(device).slice(1, 1).reshape({-1})};
}

torch::Tensor SummedCrossEntropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  return torch::nn::functional::cross_entropy(logits, targets,
                                              torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
}

}  // namespace

std::pair<double, int64_t> BlockRunner::NextTokenLoss(const torch::Tensor& hidden, const torch::Tensor& ids) const {
  torch::NoGradGuard no_grad;
  const auto [rows, next] = Predictions(hidden, ids, device_);
  const int64_t chunk = LogitRows(logit_budget_, arch_.config().vocab);
  double total = 0.0;
  for (int64_t i = 0; i < rows.size(0); i += chunk) {
    const int64_t end = std::min(i + chunk, rows.size(0));
    auto logits = arch_.Logits(Outer(), rows.slice(0, i, end).unsqueeze(0)).squeeze(0);
    // Summed in double: a mean over millions of tokens loses digits in float.
    total += SummedCrossEntropy(logits, next.slice(0, i, end)).to(torch::kFloat64).item<double>();
  }
  return {total, next.numel()};
}

torch::Tensor BlockRunner::LossGradient(const torch::Tensor& hidden, const torch::Tensor& ids) const {
  torch::AutoGradMode enable(true);
  // The mean loss is a sum over positions, each through its own logits: its gradient is taken a
  // bounded chunk of positions at a time.
  const auto [rows, next] = Predictions(hidden.detach(), ids, device_);
  const int64_t chunk = LogitRows(logit_budget_, arch_.config().vocab);
  auto grad = torch::zeros_like(hidden);
  auto grad_rows = grad.slice(1, 0, -1);  // the last position predicts nothing: its gradient is 0
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < rows.size(0); i += chunk) {
    const int64_t end = std::min(i + chunk, rows.size(0));
    auto h = rows.slice(0, i, end).detach().requires_grad_(true);
    auto logits = arch_.Logits(Outer(), h.unsqueeze(0)).squeeze(0);
    (SummedCrossEntropy(logits, next.slice(0, i, end)) / static_cast<double>(next.numel())).backward();
    parts.push_back(h.grad());
  }
  grad_rows.copy_(torch::cat(parts, 0).view(grad_rows.sizes()));
  return grad;
}

double Perplexity(const BlockRunner& runner, const torch::Tensor& ids) {
  auto hidden = runner.Embed(ids);
  for (int b = 0; b < runner.arch().num_blocks(); ++b) hidden = runner.Run(b, runner.LoadBlock(b), hidden);
  auto [nll, count] = runner.NextTokenLoss(hidden, ids);
  return std::exp(nll / static_cast<double>(count));
}

}  // namespace shears::engine
