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
#include "worker/engine/architecture.h"

namespace shears::engine {

// Every tensor of a model: the outer ones by full name, each block's by name relative to its prefix.
struct ModelWeights {
  TensorMap outer;
  std::vector<TensorMap> blocks;
};

// GPT-2-style initialisation: normal(0, 0.02) matrices, residual output projections scaled by
// 1/sqrt(2 * blocks), norm weights one, biases zero. Optional tensors are left out.
ModelWeights InitWeights(const Architecture& arch, uint64_t seed, const torch::Device& device);
// Every tensor of `model` as F32 on `device`.
ModelWeights LoadWeights(const ModelDir& model, const Architecture& arch, const torch::Device& device);
// logits [B, T, vocab] through the whole model, with autograd when the weights require it.
torch::Tensor Forward(const Architecture& arch, const ModelWeights& weights, const torch::Tensor& ids);
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

// Trains `weights` in place on windows of `ids` (1-D token ids). `on_step` sees every step's loss.
absl::Status Train(const Architecture& arch, ModelWeights& weights, const torch::Tensor& ids,
                   const TrainOptions& options, const std::function<void(const TrainStep&)>& on_step);

}  // namespace shears::engine
