#include "worker/engine/methods/linear_inputs.h"

namespace shears::engine {

void LinearInputStats::Add(const torch::Tensor& x) {
  auto rows = x.reshape({-1, x.size(-1)}).to(torch::kFloat32);
  if (!gram_.defined()) gram_ = torch::zeros({rows.size(1), rows.size(1)}, rows.options());
  gram_.addmm_(rows.t(), rows);
  tokens_ += rows.size(0);
  if (keep_inputs_) inputs_.push_back(rows.clone());
}

torch::Tensor LinearInputStats::Inputs() const {
  if (inputs_.empty()) return {};
  return torch::cat(inputs_);
}

void BlockInputs::Observe(const std::string& name, const torch::Tensor& x) {
  const bool same_input = last_input_.defined() && x.is_same(last_input_);
  auto& stats = by_linear_[name];
  if (!stats) stats = same_input ? last_stats_ : std::make_shared<LinearInputStats>(keep_(name));
  if (!(same_input && stats == last_stats_)) stats->Add(x);
  last_input_ = x;
  last_stats_ = stats;
}

const LinearInputStats* BlockInputs::Find(const std::string& name) const {
  auto it = by_linear_.find(name);
  return it == by_linear_.end() ? nullptr : it->second.get();
}

double ReconstructionError(const torch::Tensor& dense, const torch::Tensor& pruned, const torch::Tensor& gram) {
  auto quadratic = [&](const torch::Tensor& w) { return (w.matmul(gram) * w).sum().item<double>(); };
  const double reference = quadratic(dense);
  if (reference <= 0.0) return 0.0;
  return quadratic(dense - pruned) / reference;
}

}  // namespace shears::engine
