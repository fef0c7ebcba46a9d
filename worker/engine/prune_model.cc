#include "worker/engine/prune_model.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "worker/engine/architecture.h"
#include "worker/engine/block_runner.h"
#include "worker/engine/checkpoint.h"
#include "worker/engine/dataset.h"
#include "worker/engine/device.h"
#include "worker/engine/model_dir.h"
#include "worker/engine/pruning_method.h"
#include "worker/engine/tensor_io.h"

namespace shears::engine {
namespace fs = std::filesystem;

namespace {

// Files besides the weights that make the output a complete model directory.
constexpr const char* kSideFiles[] = {
    kConfigFile,         kIndexFile,        "generation_config.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json",
    "merges.txt",        "added_tokens.json",
};

using Writers = std::map<const SafetensorsFile*, std::unique_ptr<SafetensorsWriter>>;

// One output file per input file with the same tensors in the same order, so the output has the
// input's layout and sharding. `resume` reopens the files an interrupted attempt left.
absl::StatusOr<Writers> MirrorWeightFiles(const ModelDir& model, const std::string& output_dir, bool resume) {
  Writers writers;
  for (const auto& file : model.files()) {
    std::vector<TensorDecl> decls;
    for (const auto& t : file->tensors()) decls.push_back({t.name, t.dtype, t.shape});
    const std::string path = (fs::path(output_dir) / BaseName(file->path())).string();
    SHEARS_ASSIGN_OR_RETURN(writers[file.get()], resume ? SafetensorsWriter::Resume(path, decls, file->metadata())
                                                        : SafetensorsWriter::Create(path, decls, file->metadata()));
  }
  return writers;
}

// Names the inputs a checkpoint belongs to: the checkpoint files' names, sizes and times, and
// every option that changes the output.
std::string Fingerprint(const PruneOptions& options, const ModelDir& model) {
  std::string text = absl::StrCat("method=", static_cast<int>(options.method), " sparsity=", options.target_sparsity,
                                  " seed=", options.seed, " device=", options.device);
  if (options.evaluation) {
    text += absl::StrCat(" eval=", options.evaluation->path, ":", options.evaluation->seq_len, ":",
                         options.evaluation->max_tokens);
  }
  for (const auto& file : model.files()) {
    std::error_code ec;
    const auto time = fs::last_write_time(file->path(), ec).time_since_epoch().count();
    text += absl::StrCat(" ", file->path(), ":", fs::file_size(file->path(), ec), ":", time);
  }
  return Sha256Hex(text);
}

// The evaluation windows, tokenized with the model's own tokenizer when the data is text.
absl::StatusOr<torch::Tensor> EvaluationIds(const EvaluationOptions& eval, const ModelDir& model,
                                            const ModelConfig& config) {
  if (config.max_positions > 0 && eval.seq_len > config.max_positions) {
    return absl::InvalidArgumentError(absl::StrCat("evaluation seq_len ", eval.seq_len, " exceeds the model's ",
                                                   config.max_positions, " positions"));
  }
  auto tokenizer = LoadTokenizer(model.dir());
  if (!tokenizer.ok() && !absl::IsNotFound(tokenizer.status())) return tokenizer.status();
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor ids,
                          LoadTokenIds(eval.path, tokenizer.ok() ? tokenizer->get() : nullptr, config.vocab));
  return EvaluationWindows(ids, eval.seq_len, eval.max_tokens);
}

double PerplexityOf(const BlockRunner& runner, const torch::Tensor& hidden, const torch::Tensor& ids) {
  auto [nll, count] = runner.NextTokenLoss(hidden, ids);
  return std::exp(nll / static_cast<double>(count));
}

absl::StatusOr<PruneReport> PruneModelOrThrow(const PruneOptions& options, const PruneObserver& observer) {
  auto progress = [&](const std::string& stage, double fraction, const std::string& message) {
    if (observer.on_progress) observer.on_progress(stage, fraction, message);
  };
  if (!(options.target_sparsity >= 0.0 && options.target_sparsity < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("target_sparsity must be in [0, 1), got ", options.target_sparsity));
  }
  progress("loading", 0.0, absl::StrCat("reading ", options.model_dir));
  SHEARS_ASSIGN_OR_RETURN(auto model, ModelDir::Open(options.model_dir));
  SHEARS_ASSIGN_OR_RETURN(auto arch, Architecture::FromConfig(model->config()));
  SHEARS_RETURN_IF_ERROR(arch->CheckWeights(*model));
  SHEARS_ASSIGN_OR_RETURN(const torch::Device device, ParseDevice(options.device));
  SHEARS_ASSIGN_OR_RETURN(auto method, MakePruningMethod(options));
  torch::NoGradGuard no_grad;
  BlockRunner runner(*model, *arch, device);

  // The dense and the pruned model see the same windows, advanced block by block side by side,
  // so both perplexities come from one pass over the checkpoint.
  torch::Tensor eval_ids, dense, pruned;
  if (options.evaluation) {
    SHEARS_ASSIGN_OR_RETURN(eval_ids, EvaluationIds(*options.evaluation, *model, arch->config()));
    dense = runner.Embed(eval_ids);
    pruned = dense;
  }

  SHEARS_RETURN_IF_ERROR(MakeDirectories(options.output_dir));
  PruneReport report;
  for (const auto& file : model->files()) report.files.push_back(BaseName(file->path()));
  const std::string fingerprint = Fingerprint(options, *model);
  std::optional<Checkpoint> checkpoint;
  if (!options.checkpoint_dir.empty()) checkpoint = LoadCheckpoint(options.checkpoint_dir, fingerprint, device);
  absl::StatusOr<Writers> resumed = absl::NotFoundError("no checkpoint");
  if (checkpoint) resumed = MirrorWeightFiles(*model, options.output_dir, /*resume=*/true);
  if (!resumed.ok()) checkpoint.reset();  // the output is not the one checkpointed: start over
  SHEARS_ASSIGN_OR_RETURN(Writers writers,
                          checkpoint ? std::move(resumed) : MirrorWeightFiles(*model, options.output_dir, false));

  std::set<std::string> pruned_names;
  int first_block = 0;
  if (checkpoint) {
    first_block = checkpoint->blocks_done;
    for (const auto& layer : checkpoint->layers) {
      report.parameters_before += layer.parameters;
      report.parameters_after += layer.parameters - layer.zeros;
      report.layers.push_back(layer);
      pruned_names.insert(layer.name);
      writers[model->Find(layer.name)->file]->MarkWritten(layer.name);
    }
    if (options.evaluation) {
      dense = checkpoint->activations.at("dense");
      pruned = checkpoint->activations.at("pruned");
    }
    progress("pruning", double(first_block) / arch->num_blocks(),
             absl::StrCat("resuming after block ", first_block, "/", arch->num_blocks()));
  }
  for (int b = first_block; b < arch->num_blocks(); ++b) {
    if (observer.cancelled && observer.cancelled()) return absl::CancelledError("job cancelled");
    TensorMap block = runner.LoadBlock(b);
    if (options.evaluation) dense = runner.Run(block, dense);
    const std::string prefix = arch->BlockPrefix(b);
    for (const auto& linear : arch->BlockLinears(b)) {
      const auto start = std::chrono::steady_clock::now();
      const auto* at = model->Find(linear.name);
      torch::Tensor& weight = block.at(linear.name.substr(prefix.size()));
      SHEARS_RETURN_IF_ERROR(method->PruneLinear(weight, options.target_sparsity));
      // Written in the stored dtype; the pruned model is evaluated with exactly what was written.
      torch::Tensor holder;
      SHEARS_RETURN_IF_ERROR(
          writers[at->file]->Write(linear.name, TensorBytes(weight.to(ToScalarType(at->info->dtype)), holder)));
      weight = holder.to(device, torch::kFloat32);
      pruned_names.insert(linear.name);

      LayerReport layer{linear.name, b, holder.numel(), (holder == 0).sum().item<int64_t>(),
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
      report.parameters_before += layer.parameters;
      report.parameters_after += layer.parameters - layer.zeros;
      report.layers.push_back(layer);
      if (observer.on_layer) observer.on_layer(layer);
    }
    if (options.evaluation) pruned = runner.Run(block, pruned);
    if (!options.checkpoint_dir.empty()) {
      // The block's bytes are durable before the checkpoint that says they are there.
      for (auto& [file, writer] : writers) SHEARS_RETURN_IF_ERROR(writer->Sync());
      Checkpoint done{b + 1, report.layers, {}};
      if (options.evaluation) done.activations = {{"dense", dense}, {"pruned", pruned}};
      SHEARS_RETURN_IF_ERROR(SaveCheckpoint(options.checkpoint_dir, fingerprint, done));
    }
    progress("pruning", double(b + 1) / arch->num_blocks(), absl::StrCat("block ", b + 1, "/", arch->num_blocks()));
  }

  if (options.evaluation) {
    progress("evaluating", 1.0, "perplexity of the dense and the pruned model");
    EvaluationReport eval;
    eval.windows = eval_ids.size(0);
    eval.seq_len = eval_ids.size(1);
    eval.predicted_tokens = eval.windows * (eval.seq_len - 1);
    eval.dense_perplexity = PerplexityOf(runner, dense, eval_ids);
    eval.pruned_perplexity = PerplexityOf(runner, pruned, eval_ids);
    report.evaluation = eval;
  }

  progress("writing", 1.0, "copying the unpruned tensors");
  for (const auto& file : model->files()) {
    for (const auto& info : file->tensors()) {
      if (!pruned_names.count(info.name)) {
        SHEARS_RETURN_IF_ERROR(writers[file.get()]->Write(info.name, file->Data(info)));
        file->Release(info);
      }
    }
    SHEARS_RETURN_IF_ERROR(writers[file.get()]->Close());
  }
  for (const char* name : kSideFiles) {
    const fs::path from = fs::path(options.model_dir) / name;
    if (!fs::exists(from)) continue;
    SHEARS_RETURN_IF_ERROR(CopyFileAtomically(from.string(), (fs::path(options.output_dir) / name).string()));
    report.files.push_back(name);
  }
  return report;
}

}  // namespace

absl::StatusOr<PruneReport> PruneModel(const PruneOptions& options, const PruneObserver& observer) {
  // LibTorch reports errors (out of memory, a device fault) as exceptions; a job fails with them,
  // the worker does not.
  try {
    return PruneModelOrThrow(options, observer);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("engine: ", e.what()));
  }
}

}  // namespace shears::engine
