#include "worker/engine/structured/neuron_fine_tune.h"

#include <cmath>
#include <optional>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/engine/structured/neuron_scores.h"
#include "worker/engine/training/fine_tune.h"

namespace shears::engine {
namespace {

// `t` scaled along its neuron axis by `keep`.
torch::Tensor Masked(const torch::Tensor& t, int axis, const torch::Tensor& keep) {
  std::vector<int64_t> shape(t.dim(), 1);
  shape[axis] = keep.numel();
  return t * keep.view(shape);
}

}  // namespace

double CubicSparsity(int64_t step, int64_t steps, double target) {
  const double begin = 0.1 * double(steps), end = 0.7 * double(steps);
  if (double(step) >= end) return target;
  if (double(step) <= begin) return 0.0;
  return target * (1.0 - std::pow(1.0 - (double(step) - begin) / (end - begin), 3));
}

torch::Tensor UniquenessPenalty(const torch::Tensor& activations, const torch::Tensor& keep) {
  auto a = activations.reshape({-1, activations.size(-1)});
  auto unit = a / a.norm(2, {0}, /*keepdim=*/true).clamp_min(1e-6);
  auto pairs = keep.unsqueeze(1) * keep.unsqueeze(0) *
               (1 - torch::eye(keep.numel(), keep.options()));
  return (unit.t().matmul(unit).square() * pairs).sum() / pairs.sum().clamp_min(1.0);
}

absl::StatusOr<FineTunedNeurons> FineTuneNeurons(const PruneOptions& options, const PruneObserver& observer,
                                                 const ModelDir& model, const Architecture& arch,
                                                 torch::Device device, const torch::Tensor& ids) {
  const FineTuneOptions tune = WithDefaults(*options.fine_tune);
  const TrainOptions train = TrainOptionsFor(tune, options.seed);
  const NeuronAxes axes = NeuronAxesOf(arch);
  const std::string down = arch.Mlp().down;
  const bool gum = options.method == Method::kGum;
  const bool movement = gum || options.method == Method::kMovement;
  const Allocation allocation = gum ? Allocation::kGlobal : options.allocation.value_or(Allocation::kUniform);
  const double uniqueness_weight =
      !gum ? 0.0 : (tune.uniqueness_weight >= 0 ? tune.uniqueness_weight : kDefaultUniquenessWeight);
  const int blocks = arch.num_blocks();
  std::vector<int> mlp_blocks;  // those with an FFN: a Nemotron-NAS block may have none
  for (int b = 0; b < blocks; ++b) {
    if (arch.config().HasMlp(b)) mlp_blocks.push_back(b);
  }

  FineTunedNeurons out{LoadWeights(model, arch, device), {}};
  std::optional<ModelWeights> teacher;
  if (tune.distill) teacher = LoadWeights(model, arch, device);
  std::vector<torch::Tensor> scores, keep;  // scores on the CPU; keep 1/0 on the device
  for (int b = 0; b < blocks; ++b) {
    const int64_t width = arch.config().FfnOf(b);
    scores.push_back(options.method == Method::kRandom ? RandomScores(options.seed, b, width)
                                                       : torch::zeros({width}, torch::kFloat32));
    keep.push_back(torch::ones({width}, torch::TensorOptions().device(device)));
    out.pruned.push_back(torch::zeros({width}, torch::kBool));
  }

  TrainingProblem problem;
  AddParameters(out.weights, train.weight_decay, problem);
  problem.cancelled = observer.cancelled;
  problem.loss = [&](const torch::Tensor& batch, int64_t) {
    ModelWeights student{out.weights.outer, {}};
    for (int b = 0; b < blocks; ++b) {
      TensorMap block = out.weights.blocks[b];
      if (arch.config().HasMlp(b)) {
        for (const auto& [name, axis] : axes) block[name] = Masked(block[name], axis, keep[b]);
      }
      student.blocks.push_back(std::move(block));
    }
    std::vector<torch::Tensor> activations;  // each block's down-projection input, in order
    const LinearInputs capture = [&](const std::string& name, const torch::Tensor& x) {
      if (name == down) activations.push_back(x);
    };
    const auto inputs = batch.slice(1, 0, -1);
    auto logits = Forward(arch, student, inputs, uniqueness_weight > 0 ? &capture : nullptr);
    torch::Tensor teacher_logits;
    if (teacher) {
      torch::NoGradGuard no_grad;
      teacher_logits = Forward(arch, *teacher, inputs);
    }
    auto loss = StudentLoss(logits, batch, teacher_logits);
    for (size_t i = 0; i < activations.size(); ++i) {
      loss = loss + uniqueness_weight / blocks * UniquenessPenalty(activations[i], keep[mlp_blocks[i]]);
    }
    return loss;
  };
  if (movement) {
    problem.after_backward = [&](int64_t) {
      for (int b : mlp_blocks) {
        for (const auto& [name, axis] : axes) {
          const torch::Tensor& w = out.weights.blocks[b].at(name);
          if (!w.grad().defined()) continue;
          auto moved = -(w.detach() * w.grad()).to(torch::kCPU, torch::kFloat32);
          scores[b] += moved.dim() == 1 ? moved : moved.sum(1 - axis);
        }
      }
    };
  }
  bool frozen = false;  // the mask stops changing once the schedule reaches the target
  problem.after_step = [&](int64_t step) {
    if (frozen) return;
    if (options.method == Method::kMagnitude) {
      for (int b : mlp_blocks) scores[b] = MagnitudeScores(out.weights.blocks[b], axes);
    }
    const double sparsity = CubicSparsity(step + 1, train.steps, options.target_sparsity);
    out.pruned = LowestNeurons(scores, sparsity, allocation, options.width_multiple);
    for (int b = 0; b < blocks; ++b) keep[b] = out.pruned[b].logical_not().to(device, torch::kFloat32);
    frozen = sparsity == options.target_sparsity;
  };
  auto masked_share = [&] {
    int64_t masked = 0, all = 0;
    for (const auto& p : out.pruned) {
      masked += p.sum().item<int64_t>();
      all += p.numel();
    }
    return absl::StrFormat("%.1f%% of the neurons masked", 100.0 * double(masked) / double(all));
  };
  SHEARS_RETURN_IF_ERROR(Optimize(problem, ids, train, FineTuneProgress(observer, train.steps, masked_share)));
  return out;
}

}  // namespace shears::engine
