#include "worker/engine/analysis/redundancy.h"

#include <algorithm>
#include <cmath>

namespace shears::engine {
namespace {

// The neuron measures are taken on the first 256 calibration tokens: that bounds their memory
// (tokens × neurons floats) and their time (tokens × neurons² for the cosines: 1.5 s for 16,384
// neurons on two cores).
constexpr int64_t kMeasureTokens = 256;
// Sensitivity needs a backward pass through the whole model from every block's stored input: the
// inputs kept for it stay under this many bytes (at least one window), at most 16 windows.
constexpr int64_t kSensitivityBytes = int64_t{512} << 20;
constexpr int64_t kSensitivityWindows = 16;
// The cosines are taken this many entries at a time (16 MiB: malloc reuses blocks this small
// rather than mapping and clearing fresh pages for each).
constexpr int64_t kBlockEntries = int64_t{1} << 22;

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
    if (activation.defined()) {  // not in a block without FFN (Nemotron-NAS's no_op)
      out[b] = (activation * activation.grad()).sum(std::vector<int64_t>{0, 1}).to(torch::kCPU, torch::kFloat64);
    }
    grad = x.grad();
  }
  return out;
}

// Each neuron's largest cosine with another, U's columns being the unit activations; a block of
// columns at a time, so that no neurons × neurons matrix is ever whole.
torch::Tensor MaxCosine(const torch::Tensor& unit) {
  const int64_t n = unit.size(1), step = std::max<int64_t>(1, kBlockEntries / n);
  std::vector<torch::Tensor> parts;
  for (int64_t from = 0; from < n; from += step) {
    const int64_t count = std::min(step, n - from);
    auto cosine = unit.narrow(1, from, count).t().matmul(unit);  // [count, n]
    const auto rows = torch::arange(count, torch::TensorOptions().dtype(torch::kInt64).device(unit.device()));
    cosine.index_put_({rows, rows + from}, -2.0);  // not with itself
    parts.push_back(std::get<0>(cosine.max(1)));
  }
  return torch::cat(parts);
}

// The share of each neuron's activation that least squares on other neurons cannot reproduce,
// 1 / (G_ii (G⁻¹)_ii) with G = AᵀA: against all the others when the neurons are no more than the
// tokens.
// With fewer tokens than neurons every neuron is a combination of the others on them, so it is
// estimated against `regressors` evenly spaced neurons (half the tokens): for one of them, the
// others of the sample; for the rest, the whole sample (1 − a_iᵀA_R G_R⁻¹ A_Rᵀa_i / G_ii).
torch::Tensor Uniqueness(const torch::Tensor& a, const torch::Tensor& squares) {
  const int64_t tokens = a.size(0), n = a.size(1);
  const auto ridge_of = [&](const torch::Tensor& g) { return 1e-9 * g.diagonal().mean().item<double>() + 1e-300; };
  if (n <= tokens) {
    const auto g = a.t().matmul(a).to(torch::kFloat64);
    const auto inverse = torch::linalg_inv(g + ridge_of(g) * torch::eye(n, g.options()));
    return 1.0 / (squares * inverse.diagonal());
  }
  const int64_t s = std::max<int64_t>(1, tokens / 2);
  const auto sample = (torch::arange(s, torch::kFloat64) * (double(n) / double(s))).to(torch::kInt64).to(a.device());
  const auto a_r = a.index_select(1, sample);
  const auto g_r = a_r.t().matmul(a_r).to(torch::kFloat64);
  const auto inverse = torch::linalg_inv(g_r + ridge_of(g_r) * torch::eye(s, g_r.options()));
  std::vector<torch::Tensor> explained;
  const int64_t step = std::max<int64_t>(1, kBlockEntries / s);
  for (int64_t from = 0; from < n; from += step) {
    const auto c = a_r.t().matmul(a.narrow(1, from, std::min(step, n - from))).to(torch::kFloat64);  // [s, count]
    explained.push_back((c * inverse.matmul(c)).sum(0));
  }
  auto unique = 1.0 - torch::cat(explained) / squares;
  unique.index_put_({sample}, 1.0 / (squares.index_select(0, sample) * inverse.diagonal()));
  return unique;
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

void InfluenceMeter::Add(const torch::Tensor& before, const torch::Tensor& after) {
  // In double precision a few windows at a time (about 32 MiB of them): all 32 windows of 512
  // tokens at Llama-2-7B's width would be 537 MB a copy.
  const int64_t per_window = std::max<int64_t>(1, before.numel() / std::max<int64_t>(1, before.size(0)));
  const int64_t step = std::max<int64_t>(1, (int64_t{1} << 22) / per_window);
  for (int64_t i = 0; i < before.size(0); i += step) {
    const int64_t end = std::min(i + step, before.size(0));
    const auto cos = torch::cosine_similarity(before.slice(0, i, end).to(torch::kFloat64),
                                              after.slice(0, i, end).to(torch::kFloat64), /*dim=*/-1);
    cosines_ += cos.sum().item<double>();
    tokens_ += cos.numel();
  }
}

double BlockInfluence(const torch::Tensor& before, const torch::Tensor& after) {
  InfluenceMeter meter;
  meter.Add(before, after);
  return meter.value();
}

BlockRedundancy RunMeasured(const BlockRunner& runner, int b, const TensorMap& block, const torch::Tensor& hidden,
                            torch::Tensor& next, const LinearInputs* observe) {
  InfluenceMeter attention, mlp;
  const SublayerStreams streams = [&](const torch::Tensor& in, const torch::Tensor& mid, const torch::Tensor& out) {
    attention.Add(in, mid);
    mlp.Add(mid, out);
  };
  next = runner.Run(b, block, hidden, observe, &streams);
  BlockRedundancy out{b, BlockInfluence(hidden, next)};
  const Architecture& arch = runner.arch();
  if (arch.SplitsIntoSublayers()) {
    if (arch.config().HasAttention(b)) out.attention_influence = attention.value();
    if (arch.config().HasMlp(b)) out.mlp_influence = mlp.value();
  }
  return out;
}

FfnRedundancy MeasureFfn(int block, const torch::Tensor& activations) {
  FfnRedundancy out;
  out.block = block;
  const auto a = activations.to(torch::kFloat32);
  const int64_t tokens = a.size(0), n = a.size(1);
  out.neurons = n;
  const auto squares = a.square().sum(0).to(torch::kFloat64);  // G_ii
  // A neuron that never fires has no direction; it counts as unlike every other.
  const auto unit = a / a.norm(2, {0}).clamp_min(1e-12);
  if (n > 1) {
    // Σ_{i≠j} cos_ij = ‖Σ_i u_i‖² − Σ_i ‖u_i‖²: the mean over pairs without the pairs.
    const auto sum = unit.sum(1).to(torch::kFloat64);
    const double pairs = sum.dot(sum).item<double>() - unit.square().sum().item<double>();
    out.mean_pairwise_cosine = pairs / (double(n) * double(n - 1));
    out.max_cosine = Summarize(MaxCosine(unit));
    out.uniqueness = Summarize(Uniqueness(a, squares).clamp(0.0, 1.0).masked_fill(squares <= 0, 0.0));
  }
  // The singular values of A: square roots of the eigenvalues of the smaller of AAᵀ and AᵀA.
  const auto gram = (tokens < n ? a.matmul(a.t()) : a.t().matmul(a)).to(torch::kFloat64);
  auto singular = torch::linalg_eigvalsh(gram).clamp_min(0).sqrt();
  auto p = singular / singular.sum().clamp_min(1e-300);
  out.effective_rank = std::exp(-(p * p.clamp_min(1e-300).log()).sum().item<double>());
  return out;
}

RedundancyReport MeasureRedundancy(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model,
                                   bool neurons) {
  RedundancyReport report{model, {}, {}};
  const Architecture& arch = runner.arch();
  const std::string activations = arch.Mlp().down;
  const int64_t window_bytes = windows.size(1) * arch.config().hidden * 4 * (arch.num_blocks() + 1);
  const int64_t sensitivity_windows = std::clamp<int64_t>(kSensitivityBytes / std::max<int64_t>(1, window_bytes), 1,
                                                          std::min<int64_t>(windows.size(0), kSensitivityWindows));
  const auto sample = windows.slice(0, 0, sensitivity_windows);
  std::vector<torch::Tensor> sample_inputs;
  torch::Tensor hidden = runner.Embed(windows);
  for (int b = 0; b < arch.num_blocks(); ++b) {
    std::vector<torch::Tensor> rows;  // the first kMeasureTokens activations
    int64_t kept = 0;
    const LinearInputs observe = [&](const std::string& name, const torch::Tensor& x) {
      if (name != activations || kept >= kMeasureTokens) return;
      auto more = x.reshape({-1, x.size(-1)});
      rows.push_back(more.slice(0, 0, kMeasureTokens - kept).to(torch::kFloat32));
      kept += rows.back().size(0);
    };
    if (neurons) sample_inputs.push_back(hidden.slice(0, 0, sample.size(0)));
    torch::Tensor next;
    report.blocks.push_back(RunMeasured(runner, b, runner.LoadBlock(b), hidden, next, neurons ? &observe : nullptr));
    if (neurons && arch.config().HasMlp(b)) report.ffns.push_back(MeasureFfn(b, torch::cat(rows)));
    hidden = next;
  }
  if (!neurons) return report;
  sample_inputs.push_back(hidden.slice(0, 0, sample.size(0)));
  const auto sensitivity = ActivationTimesGradient(runner, sample_inputs, sample);
  for (auto& ffn : report.ffns) ffn.sensitivity = Summarize(sensitivity[ffn.block].abs());
  return report;
}

void RecordRedundancy(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model,
                      bool neurons, const PruneObserver& observer, PruneReport& report) {
  report.redundancy.push_back(MeasureRedundancy(runner, windows, model, neurons));
  if (observer.on_redundancy) observer.on_redundancy(report.redundancy.back());
}

}  // namespace shears::engine
