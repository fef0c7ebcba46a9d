#pragma once
// The datasets a job names (calibration, evaluation, fine-tuning) as token windows, tokenized with
// the model's own tokenizer (read once) when the data is text.

#include <memory>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/io/model_config.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/text/tokenizer.h"

namespace shears::engine {

class JobDatasets {
 public:
  // `observer`, when not null, hears which tokenizer file was used when it is not the first choice.
  JobDatasets(const ModelDir& model, const ModelConfig& config, const PruneObserver* observer = nullptr)
      : model_(model), config_(config), observer_(observer) {}

  // Consecutive non-overlapping windows [N, seq_len], the papers' perplexity protocol.
  absl::StatusOr<torch::Tensor> EvaluationWindows(const EvaluationOptions& options);
  // Seeded random windows [num_samples, seq_len], SparseGPT's sampling.
  absl::StatusOr<torch::Tensor> CalibrationWindows(const CalibrationOptions& options);
  // Every token of the fine-tuning data, 1-D; training samples its own windows.
  absl::StatusOr<torch::Tensor> FineTuneIds(const FineTuneOptions& options);

 private:
  absl::StatusOr<torch::Tensor> Ids(const std::string& what, const std::string& path, int64_t seq_len);

  const ModelDir& model_;
  const ModelConfig& config_;
  const PruneObserver* observer_;
  std::unique_ptr<Tokenizer> tokenizer_;  // null when the model has none
  bool tokenizer_read_ = false;
};

}  // namespace shears::engine
