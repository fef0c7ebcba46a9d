#include "worker/engine/structured/flop.h"

#include <cmath>
#include <optional>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/engine/training/fine_tune.h"

namespace shears::engine {
namespace {

// Hard-concrete gates (Louizos et al.): a stretched, clamped binary concrete, as FLOP uses them.
constexpr double kTemperature = 2.0 / 3.0;
constexpr double kStretchLow = -0.1, kStretchHigh = 1.1;
// Gates start almost surely open, so fine-tuning starts from the dense model.
constexpr double kInitialLogAlpha = 3.0;
// The gates' peak learning rate, whatever the weights' is: a gate has to cross from open to
// closed (log α from 3 to below −2.4) within a fine-tuning budget of a few hundred steps.
constexpr double kGateLearningRate = 0.2;
// The target falls from the start size to the goal over this share of the steps.
constexpr double kAnnealedShare = 0.5;
// Steps of the multipliers' gradient ascent. Adam moves each gate by about its learning rate in
// the direction the constraint terms set, so the quadratic term, which turns the push around as
// soon as the size crosses the target, has to grow fast to keep the overshoot small (tuned on the
// fixtures: within 1% of the target from 200 to 400 steps).
constexpr double kLinearMultiplierRate = 5.0;
constexpr double kQuadraticMultiplierRate = 100.0;

torch::Tensor SampleGates(const torch::Tensor& log_alpha) {
  auto u = torch::rand_like(log_alpha).clamp(1e-6, 1.0 - 1e-6);
  auto s = torch::sigmoid((u.log() - (1 - u).log() + log_alpha) / kTemperature);
  return (s * (kStretchHigh - kStretchLow) + kStretchLow).clamp(0.0, 1.0);
}

torch::Tensor DeterministicGates(const torch::Tensor& log_alpha) {
  return (torch::sigmoid(log_alpha) * (kStretchHigh - kStretchLow) + kStretchLow).clamp(0.0, 1.0);
}

// P(z ≠ 0) for each gate.
torch::Tensor OpenProbability(const torch::Tensor& log_alpha) {
  return torch::sigmoid(log_alpha - kTemperature * std::log(-kStretchLow / kStretchHigh));
}

struct GatedWeight {
  std::string name;  // full weight name
  int block = 0;
  std::string u_name, v_name;  // the factor names within the block
  torch::Tensor p, q, log_alpha;
  int64_t per_rank = 0;  // parameters of one component: rows + columns
};

}  // namespace

absl::StatusOr<FlopResult> TrainFlop(const PruneOptions& options, const PruneObserver& observer,
                                     const ModelDir& model, const Architecture& arch, torch::Device device,
                                     const torch::Tensor& ids) {
  const FineTuneOptions tune = WithDefaults(*options.fine_tune);
  const TrainOptions train = TrainOptionsFor(tune, options.seed);
  torch::manual_seed(options.seed);
  FlopResult result{LoadWeights(model, arch, device), {}, 0.0, 0.0};
  std::optional<ModelWeights> teacher;
  if (tune.distill) teacher = LoadWeights(model, arch, device);

  std::vector<GatedWeight> gated;
  double dense = 0.0;
  for (int b = 0; b < arch.num_blocks(); ++b) {
    for (const auto& linear : arch.BlockLinears(b)) {
      const std::string relative = linear.name.substr(arch.BlockPrefix(b).size());
      torch::Tensor w = result.weights.blocks[b].at(relative);
      if (arch.LinearsStoredTransposed()) w = w.t();
      auto [u, s, vh] = torch::linalg_svd(w.to(torch::kFloat64), /*full_matrices=*/false);
      auto root = s.sqrt();
      const FactorNames names = FactorNamesOf(relative);
      gated.push_back({linear.name, b, names.u, names.v, (u * root).to(torch::kFloat32),
                       (root.unsqueeze(1) * vh).to(torch::kFloat32),
                       torch::full({s.numel()}, kInitialLogAlpha, w.options()), w.size(0) + w.size(1)});
      result.weights.blocks[b].erase(relative);
      dense += double(w.numel());
    }
  }
  TrainingProblem problem;
  AddParameters(result.weights, train.weight_decay, problem);
  ParameterGroup factors, gates{{}, 0.0, kGateLearningRate / train.learning_rate};
  for (auto& g : gated) {
    for (auto* t : {&g.p, &g.q}) factors.parameters.push_back(t->requires_grad_(true));
    gates.parameters.push_back(g.log_alpha.requires_grad_(true));
  }
  problem.groups.push_back(std::move(factors));
  problem.groups.push_back(std::move(gates));
  problem.cancelled = observer.cancelled;

  auto expected_size = [&] {
    torch::Tensor size = torch::zeros({}, gated.front().log_alpha.options());
    for (const auto& g : gated) size = size + OpenProbability(g.log_alpha).sum() * double(g.per_rank);
    return size / dense;
  };
  const double start = [&] {
    torch::NoGradGuard no_grad;
    return expected_size().item<double>();
  }();
  const double target = 1.0 - options.target_sparsity;
  auto annealed = [&](int64_t step) {
    const double progress = std::min(1.0, double(step) / std::max(1.0, kAnnealedShare * double(train.steps)));
    return start + (target - start) * progress;
  };
  double lambda1 = 0.0, lambda2 = 0.0, gap = 0.0, size_now = start;
  problem.loss = [&](const torch::Tensor& batch, int64_t step) {
    ModelWeights student{result.weights.outer, result.weights.blocks};
    for (const auto& g : gated) {
      student.blocks[g.block][g.u_name] = g.p * SampleGates(g.log_alpha);
      student.blocks[g.block][g.v_name] = g.q;
    }
    const auto inputs = batch.slice(1, 0, -1);
    torch::Tensor teacher_logits;
    if (teacher) {
      torch::NoGradGuard no_grad;
      teacher_logits = Forward(arch, *teacher, inputs);
    }
    auto size = expected_size();
    auto deviation = size - annealed(step);
    size_now = size.item<double>();
    gap = deviation.item<double>();
    return StudentLoss(Forward(arch, student, inputs), batch, teacher_logits) + lambda1 * deviation +
           lambda2 * deviation.square();
  };
  problem.after_step = [&](int64_t) {
    lambda1 += kLinearMultiplierRate * gap;
    lambda2 += kQuadraticMultiplierRate * gap * gap;
  };
  auto detail = [&] {
    return absl::StrFormat("expected size %.1f%% of the dense weights (target %.1f%%)", 100.0 * size_now,
                           100.0 * target);
  };
  SHEARS_RETURN_IF_ERROR(Optimize(problem, ids, train, FineTuneProgress(observer, train.steps, detail)));

  torch::NoGradGuard no_grad;
  result.expected_size = expected_size().item<double>();
  double kept = 0.0;
  for (const auto& g : gated) {
    auto z = DeterministicGates(g.log_alpha);
    // A weight keeps at least its strongest component, so every linear still computes something.
    auto open = z > 0;
    if (!open.any().item<bool>()) open = torch::arange(z.numel(), z.device()) == g.log_alpha.argmax();
    auto index = open.nonzero().reshape(-1);
    result.factors[g.name] = {(g.p.index_select(1, index) * z.index_select(0, index)).detach(),
                              g.q.index_select(0, index).detach()};
    kept += double(index.numel() * g.per_rank);
  }
  result.final_size = kept / dense;
  return result;
}

}  // namespace shears::engine
