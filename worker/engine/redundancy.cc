#include "worker/engine/redundancy.h"

#include <cmath>

namespace shears::engine {

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
  // A neuron that never fires has no direction; it counts as unlike every other.
  const auto norms = g.diagonal().clamp_min(0).sqrt().clamp_min(1e-12);
  auto cosine = g / norms.unsqueeze(1) / norms.unsqueeze(0);
  const auto off_diagonal = torch::eye(n, torch::kBool).logical_not();
  if (n > 1) {
    out.mean_pairwise_cosine = cosine.masked_select(off_diagonal).mean().item<double>();
    auto max_cosine = std::get<0>(cosine.masked_fill(off_diagonal.logical_not(), -2.0).max(1));
    auto sorted = std::get<0>(max_cosine.sort());
    auto at = [&](double q) { return sorted[static_cast<int64_t>(q * (n - 1))].item<double>(); };
    out.max_cosine_mean = max_cosine.mean().item<double>();
    out.max_cosine_p50 = at(0.5);
    out.max_cosine_p90 = at(0.9);
    out.max_cosine_max = at(1.0);
    out.max_cosine.assign(max_cosine.data_ptr<double>(), max_cosine.data_ptr<double>() + n);
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
  torch::Tensor hidden = runner.Embed(windows);
  for (int b = 0; b < runner.arch().num_blocks(); ++b) {
    torch::Tensor gram;
    const LinearInputs observe = [&](const std::string& name, const torch::Tensor& x) {
      if (name != activations) return;
      auto rows = x.reshape({-1, x.size(-1)});
      gram = gram.defined() ? gram.addmm(rows.t(), rows) : rows.t().matmul(rows);
    };
    torch::Tensor next = runner.Run(runner.LoadBlock(b), hidden, &observe);
    report.blocks.push_back({b, BlockInfluence(hidden, next)});
    report.ffns.push_back(MeasureFfn(b, gram));
    hidden = next;
  }
  return report;
}

void RecordRedundancy(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model,
                      const PruneObserver& observer, PruneReport& report) {
  report.redundancy.push_back(MeasureRedundancy(runner, windows, model));
  if (observer.on_redundancy) observer.on_redundancy(report.redundancy.back());
}

}  // namespace shears::engine
