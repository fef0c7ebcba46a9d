#include "worker/engine/analysis/redundancy.h"

#include <algorithm>
#include <cmath>

namespace shears::engine {
namespace {

// Sensitivity needs a backward pass through the whole model; a few windows estimate it well and
// bound the block inputs kept for it.
constexpr int64_t kSensitivityWindows = 16;

// For each FFN, Σ over tokens of a · ∂L/∂a per neuron (L the mean next-token loss), by
// backpropagating one block at a time from its stored input, so that only one block's graph is
// ever in memory. `inputs` holds every block's input and, last, the final hidden states.
std::vector<torch::Tensor> ActivationTimesGradient(const BlockRunner& runner, const std::vector<torch::Tensor>& inputs,
                                                   const torch::Tensor& ids) {
  torch::AutoGradMode enable(true);  // pruning runs without autograd
  const Architecture& arch = runner.arch();
  const std::string down = arch.Mlp().down;
  torch::Tensor grad = runner.LossGradient(inputs.back(), ids);
  std::vector<torch::Tensor> out(arch.num_blocks());
  for (int b = arch.num_blocks() - 1; b >= 0; --b) {
    auto x = inputs[b].detach().requires_grad_(true);
    torch::Tensor activation;
    const LinearInputs keep = [&](const std::string& name, const torch::Tensor& a) {
      if (name != down) return;
      activation = a;
      activation.retain_grad();
    };
    arch.Block(b, runner.LoadBlock(b), x, &keep).backward(grad);
    out[b] = (activation * activation.grad()).sum(std::vector<int64_t>{0, 1}).to(torch::kCPU, torch::kFloat64);
    grad = x.grad();
  }
  return out;
}

}  // namespace

NeuronMeasure Summarize(const torch::Tensor& values) {
  NeuronMeasure out;
  const auto v = values.to(torch::kCPU, torch::kFloat64).contiguous();
  const int64_t n = v.numel();
  if (n == 0) return out;
  out.values.assign(v.data_ptr<double>(), v.data_ptr<double>() + n);
  auto sorted = std::get<0>(v.sort());
  auto at = [&](double q) { return sorted[static_cast<int64_t>(q * (n - 1))].item<double>(); };
  out.mean = v.mean().item<double>();
  out.p50 = at(0.5);
  out.p90 = at(0.9);
  out.max = at(1.0);
  return out;
}

double BlockInfluence(const torch::Tensor& before, const torch::Tensor& after) {
  auto cos = torch::cosine_similarity(before.to(torch::kFloat64), after.to(torch::kFloat64), /*dim=*/-1);
  return 1.0 - cos.mean().item<double>();
}

FfnRedundancy MeasureFfn(int block, const torch::Tensor& gram) {
  FfnRedundancy out;
  out.block = block;
  const auto g = gram.to(torch::kCPU, torch::kFloat64);
  const int64_t n = g.size(0);
  out.neurons = n;
  const auto diagonal = g.diagonal().clamp_min(0);
  // A neuron that never fires has no direction; it counts as unlike every other.
  const auto norms = diagonal.sqrt().clamp_min(1e-12);
  auto cosine = g / norms.unsqueeze(1) / norms.unsqueeze(0);
  const auto off_diagonal = torch::eye(n, torch::kBool).logical_not();
  if (n > 1) {
    out.mean_pairwise_cosine = cosine.masked_select(off_diagonal).mean().item<double>();
    out.max_cosine = Summarize(std::get<0>(cosine.masked_fill(off_diagonal.logical_not(), -2.0).max(1)));
    // Regressing neuron i on the others leaves ‖a_i‖² − (explained part) = 1 / (G⁻¹)_ii, so the
    // unexplained share is 1 / (G_ii (G⁻¹)_ii). A tiny ridge keeps exact duplicates finite (→ 0).
    const double ridge = 1e-9 * diagonal.mean().item<double>() + 1e-300;
    auto inverse_diagonal = torch::linalg_inv(g + ridge * torch::eye(n, torch::kFloat64)).diagonal();
    auto unique = (1.0 / (diagonal * inverse_diagonal)).clamp(0.0, 1.0);
    out.uniqueness = Summarize(unique.masked_fill(diagonal <= 0, 0.0));
  }
  // Singular values of A are the square roots of AᵀA's eigenvalues.
  auto singular = torch::linalg_eigvalsh(g).clamp_min(0).sqrt();
  auto p = singular / singular.sum().clamp_min(1e-300);
  auto entropy = -(p * p.clamp_min(1e-300).log()).sum().item<double>();
  out.effective_rank = std::exp(entropy);
  return out;
}

RedundancyReport MeasureRedundancy(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model) {
  RedundancyReport report{model, {}, {}};
  const std::string activations = runner.arch().Mlp().down;
  const auto sample = windows.slice(0, 0, std::min<int64_t>(windows.size(0), kSensitivityWindows));
  std::vector<torch::Tensor> sample_inputs;
  torch::Tensor hidden = runner.Embed(windows);
  for (int b = 0; b < runner.arch().num_blocks(); ++b) {
    torch::Tensor gram;
    const LinearInputs observe = [&](const std::string& name, const torch::Tensor& x) {
      if (name != activations) return;
      auto rows = x.reshape({-1, x.size(-1)});
      gram = gram.defined() ? gram.addmm(rows.t(), rows) : rows.t().matmul(rows);
    };
    sample_inputs.push_back(hidden.slice(0, 0, sample.size(0)));
    torch::Tensor next = runner.Run(b, runner.LoadBlock(b), hidden, &observe);
    report.blocks.push_back({b, BlockInfluence(hidden, next)});
    report.ffns.push_back(MeasureFfn(b, gram));
    hidden = next;
  }
  sample_inputs.push_back(hidden.slice(0, 0, sample.size(0)));
  const auto sensitivity = ActivationTimesGradient(runner, sample_inputs, sample);
  for (auto& ffn : report.ffns) ffn.sensitivity = Summarize(sensitivity[ffn.block].abs());
  return report;
}

void RecordRedundancy(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model,
                      const PruneObserver& observer, PruneReport& report) {
  report.redundancy.push_back(MeasureRedundancy(runner, windows, model));
  if (observer.on_redundancy) observer.on_redundancy(report.redundancy.back());
}

}  // namespace shears::engine
