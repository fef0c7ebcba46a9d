#include "worker/engine/model/block_runner.h"

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
  return LoadTensors(model_, arch_.BlockPrefix(block), arch_.BlockTensors(block), device_);
}

torch::Tensor BlockRunner::Run(int index, const TensorMap& block, const torch::Tensor& hidden,
                               const LinearInputs* observe) const {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < hidden.size(0); i += batch_) {
    out.push_back(arch_.Block(index, block, hidden.slice(0, i, std::min(i + batch_, hidden.size(0))), observe));
  }
  return torch::cat(out, 0);
}

torch::Tensor BlockRunner::Logits(const torch::Tensor& hidden) const {
  torch::NoGradGuard no_grad;
  return arch_.Logits(Outer(), hidden);
}

std::pair<double, int64_t> BlockRunner::NextTokenLoss(const torch::Tensor& hidden, const torch::Tensor& ids) const {
  torch::NoGradGuard no_grad;
  double total = 0.0;
  int64_t count = 0;
  auto targets = ids.to(device_);
  for (int64_t i = 0; i < hidden.size(0); i += batch_) {
    const int64_t end = std::min(i + batch_, hidden.size(0));
    auto logits = arch_.Logits(Outer(), hidden.slice(0, i, end));
    auto predicted = logits.slice(1, 0, -1).reshape({-1, logits.size(-1)});
    auto next = targets.slice(0, i, end).slice(1, 1).reshape({-1});
    // Summed in double: a mean over millions of tokens loses digits in float.
    total += torch::nn::functional::cross_entropy(
                 predicted, next, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                 .to(torch::kFloat64)
                 .item<double>();
    count += next.numel();
  }
  return {total, count};
}

torch::Tensor BlockRunner::LossGradient(const torch::Tensor& hidden, const torch::Tensor& ids) const {
  torch::AutoGradMode enable(true);
  auto h = hidden.detach().requires_grad_(true);
  auto logits = arch_.Logits(Outer(), h);
  auto loss = torch::nn::functional::cross_entropy(logits.slice(1, 0, -1).reshape({-1, logits.size(-1)}),
                                                   ids.to(device_).slice(1, 1).reshape({-1}));
  loss.backward();
  return h.grad();
}

double Perplexity(const BlockRunner& runner, const torch::Tensor& ids) {
  auto hidden = runner.Embed(ids);
  for (int b = 0; b < runner.arch().num_blocks(); ++b) hidden = runner.Run(b, runner.LoadBlock(b), hidden);
  auto [nll, count] = runner.NextTokenLoss(hidden, ids);
  return std::exp(nll / static_cast<double>(count));
}

}  // namespace shears::engine
