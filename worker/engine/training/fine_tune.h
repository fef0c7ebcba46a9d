#pragma once
// What the methods that prune while fine-tuning share: the defaults behind FineTuneOptions and the
// student's loss, optionally distilled from the dense model (Santacroce et al. find distillation
// narrows the gaps between pruning methods).

#include <torch/torch.h>

#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/training/trainer.h"

namespace shears::engine {

constexpr int64_t kDefaultFineTuneSteps = 200;
constexpr double kDefaultFineTuneLearningRate = 1e-4;
constexpr int64_t kDefaultFineTuneBatchSize = 8;
constexpr int64_t kDefaultFineTuneSeqLen = 128;

// `options` with its zeros replaced by the defaults.
FineTuneOptions WithDefaults(FineTuneOptions options);

// AdamW without weight decay (fine-tuning should not shrink the pretrained weights), 10% warm-up,
// cosine to a tenth of the peak.
TrainOptions TrainOptionsFor(const FineTuneOptions& options, uint64_t seed);

// Next-token cross-entropy of `logits` [B, T, vocab] on `batch` [B, T + 1]; with `teacher_logits`
// defined, the mean of it and KL(teacher ‖ student) over the tokens.
torch::Tensor StudentLoss(const torch::Tensor& logits, const torch::Tensor& batch, const torch::Tensor& teacher_logits);

// Reports "fine-tuning" progress every 5% of the steps.
std::function<void(const TrainStep&)> FineTuneProgress(const PruneObserver& observer, int64_t steps,
                                                       std::function<std::string()> detail);

}  // namespace shears::engine
