#include "worker/engine/training/trainer.h"

#include <cmath>
#include <filesystem>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/io/tensor_io.h"

namespace shears::engine {
namespace {

bool IsResidualOutput(const std::string& name) {
  for (const char* suffix : {"o_proj.weight", "down_proj.weight", "attn.c_proj.weight", "mlp.c_proj.weight",
                             "out_proj.weight", "fc2.weight"}) {
    if (absl::EndsWith(name, suffix)) return true;
  }
  return false;
}

// Norm scales start at one (Gemma stores scale - 1: at zero), biases at zero, matrices small.
torch::Tensor Initial(const TensorSpec& spec, const ModelConfig& config, double residual_scale,
                      const torch::Device& device) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  if (spec.shape.size() == 1) {
    const bool norm = absl::EndsWith(spec.name, ".weight");  // 1-D weights are norm scales
    return norm ? torch::full(spec.shape, 1.0 - config.norm_offset, opts) : torch::zeros(spec.shape, opts);
  }
  return torch::randn(spec.shape, opts) * 0.02 * (IsResidualOutput(spec.name) ? residual_scale : 1.0);
}

std::vector<torch::Tensor*> AllTensors(ModelWeights& weights) {
  std::vector<torch::Tensor*> out;
  for (auto& [name, t] : weights.outer) out.push_back(&t);
  for (auto& block : weights.blocks) {
    for (auto& [name, t] : block) out.push_back(&t);
  }
  return out;
}

}  // namespace

torch::Tensor TensorByName(const ModelWeights& weights, const Architecture& arch, const std::string& name) {
  const int b = arch.BlockOf(name);
  const TensorMap& group = b < 0 ? weights.outer : weights.blocks.at(b);
  auto it = group.find(b < 0 ? name : name.substr(arch.BlockPrefix(b).size()));
  return it == group.end() ? torch::Tensor() : it->second;
}

ModelWeights InitWeights(const Architecture& arch, uint64_t seed, const torch::Device& device) {
  torch::manual_seed(seed);
  const double residual_scale = 1.0 / std::sqrt(2.0 * arch.num_blocks());
  ModelWeights w;
  for (const auto& spec : arch.OuterTensors()) {
    if (!spec.optional) w.outer[spec.name] = Initial(spec, arch.config(), residual_scale, device);
  }
  for (int b = 0; b < arch.num_blocks(); ++b) {
    TensorMap block;
    for (const auto& spec : arch.BlockTensors(b)) {
      if (!spec.optional) block[spec.name] = Initial(spec, arch.config(), residual_scale, device);
    }
    w.blocks.push_back(std::move(block));
  }
  return w;
}

ModelWeights LoadWeights(const ModelDir& model, const Architecture& arch, const torch::Device& device) {
  ModelWeights w;
  w.outer = LoadTensors(model, "", arch.OuterTensors(), device);
  for (int b = 0; b < arch.num_blocks(); ++b) {
    w.blocks.push_back(arch.LoadBlock(model, b, device));
  }
  return w;
}

torch::Tensor Forward(const Architecture& arch, const ModelWeights& weights, const torch::Tensor& ids,
                      const LinearInputs* observe) {
  auto hidden = arch.Embed(weights.outer, ids);
  for (size_t b = 0; b < weights.blocks.size(); ++b) {
    hidden = arch.Block(static_cast<int>(b), weights.blocks[b], hidden, observe);
  }
  return arch.Logits(weights.outer, hidden);
}

absl::Status SaveModel(const Architecture& arch, const ModelWeights& weights, const nlohmann::json& config,
                       const std::string& dir) {
  SHEARS_RETURN_IF_ERROR(MakeDirectories(dir));
  NamedTensors tensors;
  for (const auto& [name, t] : weights.outer) tensors.emplace_back(name, t.detach().cpu().contiguous());
  for (int b = 0; b < static_cast<int>(weights.blocks.size()); ++b) {
    for (const auto& [name, t] : arch.Fuse(b, weights.blocks[b])) {
      tensors.emplace_back(arch.BlockPrefix(b) + name, t.detach().cpu().contiguous());
    }
  }
  SHEARS_RETURN_IF_ERROR(
      WriteSafetensors((std::filesystem::path(dir) / kSingleWeightsFile).string(), tensors, {{"format", "pt"}}));
  return WriteFileAtomically((std::filesystem::path(dir) / kConfigFile).string(), config.dump(2));
}

double LearningRate(const TrainOptions& o, int64_t step) {
  if (step < o.warmup_steps) return o.learning_rate * double(step + 1) / double(o.warmup_steps);
  const double progress = double(step - o.warmup_steps) / double(std::max<int64_t>(1, o.steps - o.warmup_steps));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress)));
  return o.learning_rate * (o.min_learning_rate_ratio + (1.0 - o.min_learning_rate_ratio) * cosine);
}

torch::Tensor NextTokenCrossEntropy(const torch::Tensor& logits, const torch::Tensor& batch) {
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), batch.slice(1, 1).reshape({-1}));
}

void AddParameters(ModelWeights& weights, double weight_decay, TrainingProblem& problem) {
  ParameterGroup matrices{{}, weight_decay}, others{{}, 0.0};
  for (torch::Tensor* t : AllTensors(weights)) {
    t->requires_grad_(true);
    (t->dim() >= 2 ? matrices : others).parameters.push_back(*t);
  }
  for (auto* group : {&matrices, &others}) {
    if (!group->parameters.empty()) problem.groups.push_back(std::move(*group));
  }
}

absl::Status Optimize(TrainingProblem& problem, const torch::Tensor& ids, const TrainOptions& options,
                      const std::function<void(const TrainStep&)>& on_step) {
  torch::AutoGradMode enable(true);  // callers may run without autograd (pruning does)
  const int64_t n = ids.numel();
  if (n <= options.seq_len + 1) {
    return absl::InvalidArgumentError(absl::StrCat("training data has ", n, " tokens, fewer than one window of ",
                                                   options.seq_len, " plus one"));
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  std::vector<torch::Tensor> all;
  for (const auto& group : problem.groups) {
    groups.emplace_back(group.parameters, std::make_unique<torch::optim::AdamWOptions>(
                                              torch::optim::AdamWOptions(options.learning_rate)
                                                  .betas({0.9, 0.95})
                                                  .weight_decay(group.weight_decay)));
    all.insert(all.end(), group.parameters.begin(), group.parameters.end());
  }
  torch::optim::AdamW optimizer(std::move(groups));

  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int64_t> start(0, n - options.seq_len - 2);
  const auto device = all.front().device();
  for (int64_t step = 0; step < options.steps; ++step) {
    if (problem.cancelled && problem.cancelled()) {
      for (auto& t : all) t.requires_grad_(false);
      return absl::CancelledError("cancelled while fine-tuning");
    }
    const double lr = LearningRate(options, step);
    for (size_t g = 0; g < problem.groups.size(); ++g) {
      static_cast<torch::optim::AdamWOptions&>(optimizer.param_groups()[g].options())
          .lr(lr * problem.groups[g].learning_rate_scale);
    }
    std::vector<torch::Tensor> windows;
    for (int64_t i = 0; i < options.batch_size; ++i) windows.push_back(ids.slice(0, start(rng)).slice(0, 0, options.seq_len + 1));
    auto loss = problem.loss(torch::stack(windows).to(device), step);
    optimizer.zero_grad();
    loss.backward();
    if (problem.after_backward) problem.after_backward(step);
    torch::nn::utils::clip_grad_norm_(all, options.grad_clip);
    optimizer.step();
    if (problem.after_step) problem.after_step(step);
    if (on_step) on_step({step, loss.item<double>(), lr});
  }
  for (auto& t : all) t.requires_grad_(false);
  return absl::OkStatus();
}

absl::Status Train(const Architecture& arch, ModelWeights& weights, const torch::Tensor& ids,
                   const TrainOptions& options, const std::function<void(const TrainStep&)>& on_step) {
  TrainingProblem problem;
  AddParameters(weights, options.weight_decay, problem);
  problem.loss = [&](const torch::Tensor& batch, int64_t) {
    return NextTokenCrossEntropy(Forward(arch, weights, batch.slice(1, 0, -1)), batch);
  };
  return Optimize(problem, ids, options, on_step);
}

}  // namespace shears::engine
