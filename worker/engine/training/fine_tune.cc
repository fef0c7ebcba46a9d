#include "worker/engine/training/fine_tune.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace shears::engine {

FineTuneOptions WithDefaults(FineTuneOptions o) {
  if (o.steps == 0) o.steps = kDefaultFineTuneSteps;
  if (o.learning_rate == 0.0) o.learning_rate = kDefaultFineTuneLearningRate;
  if (o.batch_size == 0) o.batch_size = kDefaultFineTuneBatchSize;
  if (o.seq_len == 0) o.seq_len = kDefaultFineTuneSeqLen;
  return o;
}

TrainOptions TrainOptionsFor(const FineTuneOptions& options, uint64_t seed) {
  const FineTuneOptions o = WithDefaults(options);
  TrainOptions train;
  train.steps = o.steps;
  train.batch_size = o.batch_size;
  train.seq_len = o.seq_len;
  train.learning_rate = o.learning_rate;
  train.warmup_steps = std::max<int64_t>(1, o.steps / 10);
  train.weight_decay = 0.0;
  train.seed = seed;
  return train;
}

torch::Tensor StudentLoss(const torch::Tensor& logits, const torch::Tensor& batch,
                          const torch::Tensor& teacher_logits) {
  auto loss = NextTokenCrossEntropy(logits, batch);
  if (!teacher_logits.defined()) return loss;
  const int64_t vocab = logits.size(-1);
  auto log_student = torch::log_softmax(logits.reshape({-1, vocab}), -1);
  auto log_teacher = torch::log_softmax(teacher_logits.reshape({-1, vocab}), -1);
  auto kl = (log_teacher.exp() * (log_teacher - log_student)).sum(-1).mean();
  return 0.5 * (loss + kl);
}

std::function<void(const TrainStep&)> FineTuneProgress(const PruneObserver& observer, int64_t steps,
                                                       std::function<std::string()> detail) {
  const int64_t every = std::max<int64_t>(1, steps / 20);
  return [&observer, steps, every, detail = std::move(detail)](const TrainStep& s) {
    if (!observer.on_progress || ((s.step + 1) % every != 0 && s.step + 1 != steps)) return;
    observer.on_progress("fine-tuning", double(s.step + 1) / double(steps),
                         absl::StrCat("step ", s.step + 1, "/", steps, ", loss ", absl::StrFormat("%.4f", s.loss),
                                      detail ? absl::StrCat(", ", detail()) : ""));
  };
}

}  // namespace shears::engine
