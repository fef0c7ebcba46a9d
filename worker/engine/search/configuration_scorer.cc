#include "worker/engine/search/configuration_scorer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/allocation/owl.h"
#include "worker/engine/analysis/redundancy.h"
#include "worker/engine/methods/method_registry.h"
#include "worker/engine/structured/neuron_scores.h"

namespace shears::engine {
namespace {

constexpr int kGridPoints = 9;

}  // namespace

absl::StatusOr<std::unique_ptr<ConfigurationScorer>> ConfigurationScorer::Build(const BlockRunner& runner,
                                                                               const SearchSpace& space,
                                                                               Method base_method,
                                                                               const torch::Tensor& statistics,
                                                                               const torch::Tensor& held_out) {
  PruneOptions base;
  base.method = base_method;
  SHEARS_ASSIGN_OR_RETURN(auto method, MakePruningMethod(base));
  std::unique_ptr<ConfigurationScorer> scorer(new ConfigurationScorer(runner, space, std::move(method)));
  const Architecture& arch = runner.arch();
  torch::Tensor hidden = runner.Embed(statistics);
  for (int b = 0; b < arch.num_blocks(); ++b) {
    scorer->blocks_.push_back(runner.LoadBlock(b));
    auto inputs = std::make_unique<BlockInputs>([](const std::string&) { return InputsToGather{}; });
    const LinearInputs observe = [&](const std::string& name, const torch::Tensor& x) { inputs->Observe(name, x); };
    torch::Tensor next = runner.Run(b, scorer->blocks_.back(), hidden, &observe);
    scorer->block_influence_.push_back(BlockInfluence(hidden, next));
    scorer->statistics_.push_back(std::move(inputs));
    hidden = next;
  }
  scorer->held_out_ids_ = held_out;
  scorer->held_out_hidden_ = runner.Embed(held_out);

  if (space.unit() == SearchUnit::kFfnNeurons) {
    const NeuronAxes axes = NeuronAxesOf(arch);
    for (const auto& block : scorer->blocks_) {
      scorer->neuron_order_.push_back(std::get<1>(MagnitudeScores(block, axes).sort(c10::optional<bool>(true), 0)));
    }
  }
  // Each module's reconstruction error across its allowed sparsities, from the dense statistics.
  for (int i = 0; i < kGridPoints; ++i) {
    scorer->grid_.push_back(space.low() + (space.high() - space.low()) * i / (kGridPoints - 1));
  }
  for (size_t m = 0; m < space.modules().size(); ++m) {
    std::vector<double> errors;
    for (double sparsity : scorer->grid_) {
      SHEARS_ASSIGN_OR_RETURN(double error, scorer->MeasuredError(m, sparsity));
      errors.push_back(error);
    }
    scorer->errors_.push_back(std::move(errors));
  }
  return scorer;
}

absl::StatusOr<torch::Tensor> ConfigurationScorer::Pruned(int block, const std::string& weight_name, int64_t count) {
  const Architecture& arch = runner_.arch();
  const std::string local = weight_name.substr(arch.BlockPrefix(block).size());
  LinearToPrune linear{local, arch.OutInView(blocks_[block].at(local)).clone(),
                       statistics_[block]->Find(local)};
  if (linear.inputs == nullptr) return absl::InternalError(absl::StrCat("no calibration inputs of ", weight_name));
  const double sparsity = double(count) / double(linear.weight.numel());
  SHEARS_RETURN_IF_ERROR(method_->PruneLinear(linear, SparsityTarget{sparsity, 0, 0, /*exact_count=*/true}));
  return linear.weight;
}

torch::Tensor ConfigurationScorer::WeakestNeuronIndices(int block, int64_t count) const {
  return neuron_order_[block].slice(0, 0, count);
}

absl::StatusOr<double> ConfigurationScorer::MeasuredError(size_t m, double sparsity) {
  const Architecture& arch = runner_.arch();
  const SearchModule& module = space_.modules()[m];
  const std::string prefix = arch.BlockPrefix(module.block);
  // ‖(W−Ŵ)X‖² and ‖WX‖² summed over the module's linears; removing neurons, over the down
  // projection's columns of the removed neurons.
  double lost = 0, kept = 0;
  for (size_t i = 0; i < module.linears.size(); ++i) {
    const int64_t count = std::llround(sparsity * double(module.sizes[i]));
    const std::string local = space_.unit() == SearchUnit::kFfnNeurons ? arch.Mlp().down
                                                                       : module.linears[i].substr(prefix.size());
    const torch::Tensor dense = arch.OutInView(blocks_[module.block].at(local));
    const torch::Tensor& gram = statistics_[module.block]->Find(local)->gram();
    torch::Tensor delta;
    if (space_.unit() == SearchUnit::kFfnNeurons) {
      const torch::Tensor removed = WeakestNeuronIndices(module.block, count);
      delta = torch::zeros_like(dense).index_copy(1, removed, dense.index_select(1, removed));
    } else {
      SHEARS_ASSIGN_OR_RETURN(torch::Tensor pruned, Pruned(module.block, module.linears[i], count));
      delta = dense - pruned;
    }
    lost += (delta.matmul(gram) * delta).sum().item<double>();
    kept += (dense.matmul(gram) * dense).sum().item<double>();
  }
  return kept > 0 ? lost / kept : 0.0;
}

absl::Status ConfigurationScorer::Apply(size_t m, const int64_t* counts, TensorMap& block) {
  const Architecture& arch = runner_.arch();
  const SearchModule& module = space_.modules()[m];
  if (space_.unit() == SearchUnit::kFfnNeurons) {
    // A neuron whose down-projection column is zero adds nothing: the same output as removing it.
    const std::string& down = arch.Mlp().down;
    torch::Tensor stored = blocks_[module.block].at(down).clone();
    arch.OutInView(stored).index_fill_(1, WeakestNeuronIndices(module.block, counts[0]), 0.0);
    block[down] = stored;
    return absl::OkStatus();
  }
  for (size_t i = 0; i < module.linears.size(); ++i) {
    SHEARS_ASSIGN_OR_RETURN(torch::Tensor weight, Pruned(module.block, module.linears[i], counts[i]));
    block[module.linears[i].substr(arch.BlockPrefix(module.block).size())] = arch.OutInView(weight);
  }
  return absl::OkStatus();
}

absl::StatusOr<double> ConfigurationScorer::Score(const Configuration& config) {
  const std::vector<int64_t> counts = space_.Counts(config);
  std::vector<TensorMap> pruned = blocks_;  // shallow: only the pruned tensors are replaced
  size_t j = 0;
  for (size_t m = 0; m < space_.modules().size(); ++m) {
    SHEARS_RETURN_IF_ERROR(Apply(m, counts.data() + j, pruned[space_.modules()[m].block]));
    j += space_.modules()[m].linears.size();
  }
  torch::Tensor hidden = held_out_hidden_;
  for (size_t b = 0; b < pruned.size(); ++b) hidden = runner_.Run(static_cast<int>(b), pruned[b], hidden);
  auto [nll, tokens] = runner_.NextTokenLoss(hidden, held_out_ids_);
  return std::exp(nll / double(tokens));
}

absl::StatusOr<std::vector<double>> ConfigurationScorer::OutlierRatios(double multiple) const {
  std::vector<double> ratios;
  for (size_t b = 0; b < blocks_.size(); ++b) {
    SHEARS_ASSIGN_OR_RETURN(double ratio,
                            OutlierRatio(runner_.arch(), static_cast<int>(b), blocks_[b], *statistics_[b], multiple));
    ratios.push_back(ratio);
  }
  return ratios;
}

double ConfigurationScorer::ModuleError(size_t m, double sparsity) const {
  const auto& errors = errors_[m];
  if (sparsity <= grid_.front()) return errors.front();
  if (sparsity >= grid_.back()) return errors.back();
  const auto above = std::upper_bound(grid_.begin(), grid_.end(), sparsity);
  const size_t i = static_cast<size_t>(above - grid_.begin());
  const double t = (sparsity - grid_[i - 1]) / (grid_[i] - grid_[i - 1]);
  return errors[i - 1] + t * (errors[i] - errors[i - 1]);
}

std::vector<float> ConfigurationScorer::Features(const Configuration& config) const {
  std::vector<float> features(config.begin(), config.end());
  double total = 0;
  for (size_t m = 0; m < config.size(); ++m) {
    const double weighted = ModuleError(m, config[m]) * block_influence_[space_.modules()[m].block];
    features.push_back(static_cast<float>(weighted));
    total += weighted;
  }
  features.push_back(static_cast<float>(total));
  return features;
}

}  // namespace shears::engine
