#include "worker/engine/text/job_datasets.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace shears::engine {

absl::StatusOr<torch::Tensor> JobDatasets::EvaluationWindows(const EvaluationOptions& options) {
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor ids, Ids("evaluation", options.path, options.seq_len));
  return engine::EvaluationWindows(ids, options.seq_len, options.max_tokens);
}

absl::StatusOr<torch::Tensor> JobDatasets::CalibrationWindows(const CalibrationOptions& options) {
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor ids, Ids("calibration", options.path, options.seq_len));
  return engine::CalibrationWindows(ids, options.num_samples, options.seq_len, options.seed);
}

absl::StatusOr<torch::Tensor> JobDatasets::FineTuneIds(const FineTuneOptions& options) {
  return Ids("fine-tuning", options.path, options.seq_len);
}

absl::StatusOr<torch::Tensor> JobDatasets::Ids(const std::string& what, const std::string& path, int64_t seq_len) {
  if (config_.max_positions > 0 && seq_len > config_.max_positions) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " seq_len ", seq_len, " exceeds the model's ", config_.max_positions, " positions"));
  }
  StageClock::Scope timed(observer_ != nullptr ? observer_->clock : nullptr, "tokenize");
  if (!tokenizer_read_) {
    auto chosen = ChooseTokenizer(model_.dir());
    if (!chosen.ok() && !absl::IsNotFound(chosen.status())) return chosen.status();
    if (chosen.ok()) {
      tokenizer_ = std::move(chosen->tokenizer);
      if (!chosen->note.empty() && observer_ != nullptr && observer_->on_progress) {
        observer_->on_progress("loading", 0.0, chosen->note);
      }
    }
    tokenizer_read_ = true;
  }
  return LoadTokenIds(path, tokenizer_.get(), config_.vocab);
}

}  // namespace shears::engine
