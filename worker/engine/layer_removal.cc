#include "worker/engine/layer_removal.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/engine/job_data.h"
#include "worker/engine/masks.h"
#include "worker/engine/model_writer.h"
#include "worker/engine/tensor_io.h"

namespace shears::engine {
namespace {

// The blocks to remove, in ascending order.
std::vector<int> SelectBlocks(const PruneOptions& options, int blocks, int k, const RedundancyReport* dense) {
  std::vector<int> order(blocks);
  std::iota(order.begin(), order.end(), 0);
  switch (options.method) {
    case Method::kBlockInfluence:
      // The least influential first; ties keep the earlier block first.
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return dense->blocks[a].block_influence < dense->blocks[b].block_influence;
      });
      break;
    case Method::kLastBlocks:
      std::reverse(order.begin(), order.end());
      break;
    default: {  // random
      std::mt19937_64 rng(options.seed);
      std::shuffle(order.begin(), order.end(), rng);
    }
  }
  std::vector<int> chosen(order.begin(), order.begin() + k);
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

// The block a tensor belongs to, or -1 for the embeddings, final norm and head.
int BlockOf(const Architecture& arch, const std::string& name) {
  for (int b = 0; b < arch.num_blocks(); ++b) {
    if (absl::StartsWith(name, arch.BlockPrefix(b))) return b;
  }
  return -1;
}

}  // namespace

double BlockInfluence(const torch::Tensor& before, const torch::Tensor& after) {
  auto cos = torch::cosine_similarity(before.to(torch::kFloat64), after.to(torch::kFloat64), /*dim=*/-1);
  return 1.0 - cos.mean().item<double>();
}

RedundancyReport MeasureBlockInfluence(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model) {
  RedundancyReport report{model, {}};
  torch::Tensor hidden = runner.Embed(windows);
  for (int b = 0; b < runner.arch().num_blocks(); ++b) {
    torch::Tensor next = runner.Run(runner.LoadBlock(b), hidden);
    report.blocks.push_back({b, BlockInfluence(hidden, next)});
    hidden = next;
  }
  return report;
}

absl::StatusOr<PruneReport> RemoveBlocks(const PruneOptions& options, const PruneObserver& observer,
                                         const ModelDir& model, const Architecture& arch, torch::Device device) {
  const int blocks = arch.num_blocks();
  const int k = static_cast<int>(PrunedCount(blocks, options.target_sparsity));
  if (k >= blocks) {
    return absl::InvalidArgumentError(absl::StrCat("target_sparsity: ", options.target_sparsity, " removes ", k, " of the ",
                                                   blocks, " blocks and would leave none"));
  }
  auto progress = [&](const std::string& stage, double fraction, const std::string& message) {
    if (observer.on_progress) observer.on_progress(stage, fraction, message);
  };
  JobData data(model, arch.config());
  BlockRunner runner(model, arch, device);
  PruneReport report;
  torch::Tensor calibration;
  if (options.calibration) {
    SHEARS_ASSIGN_OR_RETURN(calibration, data.CalibrationWindows(*options.calibration));
    progress("measuring", 0.0, "Block Influence of every block on the calibration windows");
    report.redundancy.push_back(MeasureBlockInfluence(runner, calibration, "dense"));
    if (observer.on_redundancy) observer.on_redundancy(report.redundancy.back());
  } else if (options.method == Method::kBlockInfluence) {
    return absl::InvalidArgumentError("calibration: Block Influence is measured on calibration data");
  }
  report.removed_blocks = SelectBlocks(options, blocks, k, report.redundancy.empty() ? nullptr : &report.redundancy[0]);
  const std::set<int> removed(report.removed_blocks.begin(), report.removed_blocks.end());

  // The kept blocks renumbered in order; everything outside the blocks unchanged.
  std::vector<int> new_index(blocks, -1);
  for (int b = 0, next = 0; b < blocks; ++b) {
    if (!removed.count(b)) new_index[b] = next++;
  }
  std::vector<OutputTensor> outputs;
  std::vector<std::pair<const ModelDir::Located*, std::string>> sources;  // input tensor -> output name
  std::vector<int64_t> block_parameters(blocks, 0);
  for (const auto& file : model.files()) {
    for (const auto& info : file->tensors()) {
      const int64_t numel = info.numel();
      report.model_parameters_before += numel;
      const int b = BlockOf(arch, info.name);
      if (b >= 0) block_parameters[b] += numel;
      if (b >= 0 && removed.count(b)) continue;
      const std::string name =
          b < 0 ? info.name : arch.BlockPrefix(new_index[b]) + info.name.substr(arch.BlockPrefix(b).size());
      outputs.push_back({name, BaseName(file->path()), info.dtype, info.shape});
      sources.emplace_back(model.Find(info.name), name);
      report.model_parameters_after += numel;
    }
  }
  for (int b = 0; b < blocks; ++b) {
    report.parameters_before += block_parameters[b];
    if (!removed.count(b)) report.parameters_after += block_parameters[b];
  }
  for (int b : report.removed_blocks) {
    report.layers.push_back({arch.BlockPrefix(b), b, block_parameters[b], block_parameters[b], -1.0, 0.0});
    if (observer.on_layer) observer.on_layer(report.layers.back());
  }

  progress("writing", 0.5, absl::StrCat("removing blocks ", absl::StrJoin(report.removed_blocks, ", ")));
  SHEARS_ASSIGN_OR_RETURN(auto writer, ModelWriter::Create(model, options.output_dir, outputs));
  for (const auto& [at, name] : sources) {
    SHEARS_RETURN_IF_ERROR(writer->Write(name, LoadTensor(*at->file, *at->info)));
  }
  nlohmann::json config = model.config();
  config[NumBlocksKey(arch.config().family)] = blocks - k;
  SHEARS_ASSIGN_OR_RETURN(report.files, writer->Finish(config));

  // The pruned model is evaluated as written, read back like any other model.
  SHEARS_ASSIGN_OR_RETURN(auto pruned, ModelDir::Open(options.output_dir));
  SHEARS_ASSIGN_OR_RETURN(auto pruned_arch, Architecture::FromConfig(pruned->config()));
  BlockRunner pruned_runner(*pruned, *pruned_arch, device);
  if (calibration.defined()) {
    report.redundancy.push_back(MeasureBlockInfluence(pruned_runner, calibration, "pruned"));
    if (observer.on_redundancy) observer.on_redundancy(report.redundancy.back());
  }
  if (options.evaluation) {
    progress("evaluating", 0.8, "perplexity of the dense and the pruned model");
    SHEARS_ASSIGN_OR_RETURN(torch::Tensor ids, data.EvaluationWindows(*options.evaluation));
    EvaluationReport eval{ids.size(0), ids.size(1), ids.size(0) * (ids.size(1) - 1), Perplexity(runner, ids),
                          Perplexity(pruned_runner, ids)};
    report.evaluation = eval;
  }
  return report;
}

}  // namespace shears::engine
