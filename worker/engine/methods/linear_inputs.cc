#include "worker/engine/methods/linear_inputs.h"

#include <algorithm>

namespace shears::engine {

void LinearInputStats::Add(const torch::Tensor& x) {
  auto rows = x.reshape({-1, x.size(-1)}).to(torch::kFloat32);
  if (what_.gram) {
    if (!gram_.defined()) gram_ = torch::zeros({rows.size(1), rows.size(1)}, rows.options());
    gram_.addmm_(rows.t(), rows);
  } else {  // the Gram matrix's diagonal is all of it that is kept
    if (!squares_.defined()) squares_ = torch::zeros({rows.size(1)}, rows.options());
    squares_.add_(rows.square().sum(0));
  }
  if (what_.inputs) inputs_.push_back(rows.clone());
  if (what_.sample_stride > 0) {
    // The first token of this batch that falls on the stride counted from the first batch.
    const int64_t first = (what_.sample_stride - tokens_ % what_.sample_stride) % what_.sample_stride;
    if (first < rows.size(0)) {
      sample_.push_back(rows.slice(0, first, rows.size(0), what_.sample_stride).clone());
    }
  }
  tokens_ += rows.size(0);
}

namespace {

// The batches as one tensor, which replaces them: read again, it is not joined again, and the
// batches are not held twice (the inputs of a 7B MLP at 16k tokens are 268 MB).
const torch::Tensor& Joined(std::vector<torch::Tensor>& batches) {
  if (batches.size() > 1) batches = {torch::cat(batches)};
  return batches.front();
}

}  // namespace

torch::Tensor LinearInputStats::Inputs() const { return inputs_.empty() ? torch::Tensor() : Joined(inputs_); }

torch::Tensor LinearInputStats::Sample() const { return sample_.empty() ? torch::Tensor() : Joined(sample_); }

void BlockInputs::Observe(const std::string& name, const torch::Tensor& x) {
  const bool same_input = last_input_.defined() && x.is_same(last_input_);
  auto& stats = by_linear_[name];
  if (!stats) stats = same_input ? last_stats_ : std::make_shared<LinearInputStats>(what_(name));
  if (!(same_input && stats == last_stats_)) stats->Add(x);
  last_input_ = x;
  last_stats_ = stats;
}

const LinearInputStats* BlockInputs::Find(const std::string& name) const {
  auto it = by_linear_.find(name);
  return it == by_linear_.end() ? nullptr : it->second.get();
}

int64_t SampleStride(int64_t tokens, int64_t samples) {
  return std::max<int64_t>(1, (tokens + samples - 1) / std::max<int64_t>(1, samples));
}

double ReconstructionError(const torch::Tensor& dense, const torch::Tensor& pruned, const torch::Tensor& gram) {
  auto quadratic = [&](const torch::Tensor& w) { return (w.matmul(gram) * w).sum().item<double>(); };
  const double reference = quadratic(dense);
  if (reference <= 0.0) return 0.0;
  return quadratic(dense - pruned) / reference;
}

double ReconstructionError(const torch::Tensor& dense_outputs, const torch::Tensor& pruned_outputs) {
  const double reference = dense_outputs.square().sum().item<double>();
  if (reference <= 0.0) return 0.0;
  return (dense_outputs - pruned_outputs).square().sum().item<double>() / reference;
}

}  // namespace shears::engine
