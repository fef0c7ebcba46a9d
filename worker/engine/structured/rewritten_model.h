#pragma once
// What structured pruning shares: the output is the input model rewritten tensor by tensor (some
// dropped, renamed or cut along one dimension) under an edited config.json, then read back from
// disk and evaluated like any model, so the reported perplexity is that of the files written.

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {

// What becomes of one input tensor.
struct TensorEdit {
  bool drop = false;
  std::string name;     // the output name (the input's unless renamed)
  int dim = -1;         // >= 0: only the entries `index` along this dimension remain
  torch::Tensor index;  // int64, ascending
  torch::Tensor value;  // when defined, written (then cut) instead of the input's tensor
  // When non-empty, these tensors are written in its place (same file and dtype), e.g. low-rank
  // factors instead of a weight.
  std::vector<std::pair<std::string, torch::Tensor>> replacements;
};
using TensorEditor = std::function<TensorEdit(const std::string& name)>;

// Keeps the blocks `kept` (ascending input indices), renumbered in order, and drops the others'
// tensors; `drop`, when set, drops more tensors of the kept blocks (block, name relative to its
// prefix). Tensors outside the blocks stay as they are.
TensorEditor KeepBlocks(const Architecture& arch, const std::vector<int>& kept,
                        std::function<bool(int block, const std::string& name)> drop = nullptr);

// Orders `items` (in model order) as the removal methods take them: METHOD_BLOCK_INFLUENCE by
// `less_influential` (stable: ties keep the earlier first), METHOD_LAST_BLOCKS from the end,
// METHOD_RANDOM shuffled by the job's seed.
template <typename T, typename Less>
void OrderForRemoval(const PruneOptions& options, std::vector<T>& items, Less less_influential) {
  switch (options.method) {
    case Method::kBlockInfluence:
      std::stable_sort(items.begin(), items.end(), less_influential);
      break;
    case Method::kLastBlocks:
      std::reverse(items.begin(), items.end());
      break;
    default: {  // random
      std::mt19937_64 rng(options.seed);
      std::shuffle(items.begin(), items.end(), rng);
    }
  }
}

// The start of every structured method: the calibration windows when the job has them, with the
// dense model's redundancy measured on them into `report`; an undefined tensor otherwise.
absl::StatusOr<torch::Tensor> MeasureDenseModel(const PruneOptions& options, const PruneObserver& observer,
                                                JobDatasets& data, const BlockRunner& dense, PruneReport& report);

// Writes `model` (of architecture `arch`) edited by `edit` into `out_dir` with `config`; fills
// report.files and report.model_parameters_before/after (counted from the tensors). `edit` is
// asked about the linears a fused tensor holds, by their names, and the fused tensor written
// accordingly (architecture.h, FusedLinear).
absl::Status WriteRewrittenModel(const ModelDir& model, const Architecture& arch, const std::string& out_dir,
                                 const TensorEditor& edit, const nlohmann::json& config, PruneReport& report);

// Reads the output back and measures it against the input: the perplexity of both when the job
// asks for evaluation, and the pruned model's redundancy on `calibration` windows when defined.
absl::Status EvaluateRewrittenModel(const PruneOptions& options, const PruneObserver& observer, JobDatasets& data,
                                    const BlockRunner& dense, torch::Device device, const torch::Tensor& calibration,
                                    PruneReport& report);

// Both of the above, the end of every structured method: reports `what` it writes, writes the
// output and measures it.
absl::Status WriteAndEvaluate(const PruneOptions& options, const PruneObserver& observer, const ModelDir& model,
                              const TensorEditor& edit, const nlohmann::json& config, const std::string& what,
                              JobDatasets& data, const BlockRunner& dense, torch::Device device,
                              const torch::Tensor& calibration, PruneReport& report);

}  // namespace shears::engine
