#pragma once
// Training a whole model in memory: AdamW, linear warm-up then cosine decay, gradient clipping,
// batches of random token windows. The fine-tuning methods and `shears-train` build on it; models
// that train here are small enough to hold whole.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/model/architecture.h"

namespace shears::engine {

// Every tensor of a model: the outer ones by full name, each block's by name relative to its prefix.
struct ModelWeights {
  TensorMap outer;
  std::vector<TensorMap> blocks;
};

// The tensor of `weights` with full name `name`, or an undefined tensor.
torch::Tensor TensorByName(const ModelWeights& weights, const Architecture& arch, const std::string& name);

// GPT-2-style initialisation: normal(0, 0.02) matrices, residual output projections scaled by
// 1/sqrt(2 * blocks), norm weights one, biases zero. Optional tensors are left out.
ModelWeights InitWeights(const Architecture& arch, uint64_t seed, const torch::Device& device);
// Every tensor of `model` as F32 on `device`.
ModelWeights LoadWeights(const ModelDir& model, const Architecture& arch, const torch::Device& device);
// logits [B, T, vocab] through the whole model, with autograd when the weights require it.
// `observe`, when not null, sees every linear's input, block after block.
torch::Tensor Forward(const Architecture& arch, const ModelWeights& weights, const torch::Tensor& ids,
                      const LinearInputs* observe = nullptr);
// Writes model.safetensors (F32, Hugging Face names) and config.json into `dir`.
absl::Status SaveModel(const Architecture& arch, const ModelWeights& weights, const nlohmann::json& config,
                       const std::string& dir);

struct TrainOptions {
  int64_t steps = 1000;
  int64_t batch_size = 16;
  int64_t seq_len = 128;
  double learning_rate = 3e-3;
  double min_learning_rate_ratio = 0.1;  // the cosine ends at this fraction of the peak
  int64_t warmup_steps = 100;
  double weight_decay = 0.1;  // on matrices only, as is usual
  double grad_clip = 1.0;
  uint64_t seed = 0;
};

// The learning rate at `step` (0-based): linear warm-up, then cosine decay to the floor.
double LearningRate(const TrainOptions& options, int64_t step);

struct TrainStep {
  int64_t step;
  double loss;
  double learning_rate;
};

// What a training run optimizes, for the methods that prune while they fine-tune: the
// parameters, the loss of a batch of windows [B, seq_len + 1], and hooks around each step.
struct ParameterGroup {
  std::vector<torch::Tensor> parameters;
  double weight_decay = 0.0;
  double learning_rate_scale = 1.0;  // of the schedule's rate (FLOP's gates learn faster)
};

struct TrainingProblem {
  std::vector<ParameterGroup> groups;
  std::function<torch::Tensor(const torch::Tensor& batch, int64_t step)> loss;
  std::function<void(int64_t step)> after_backward;  // gradients are there: accumulate scores
  std::function<void(int64_t step)> after_step;      // parameters moved: update masks, multipliers
  std::function<bool()> cancelled;                     // polled before every step
};

// AdamW on `problem` over random windows of `ids` (1-D token ids). `on_step` sees every step's loss.
absl::Status Optimize(TrainingProblem& problem, const torch::Tensor& ids, const TrainOptions& options,
                      const std::function<void(const TrainStep&)>& on_step);

// Next-token cross-entropy of `logits` [B, T, vocab] for the windows `batch` [B, T + 1].
torch::Tensor NextTokenCrossEntropy(const torch::Tensor& logits, const torch::Tensor& batch);

// Every tensor of `weights`, marked for gradients, as two groups: matrices (with `weight_decay`)
// and the rest (without).
void AddParameters(ModelWeights& weights, double weight_decay, TrainingProblem& problem);

// Trains every tensor of `weights` in place on windows of `ids` by next-token loss.
absl::Status Train(const Architecture& arch, ModelWeights& weights, const torch::Tensor& ids,
                   const TrainOptions& options, const std::function<void(const TrainStep&)>& on_step);

}  // namespace shears::engine
