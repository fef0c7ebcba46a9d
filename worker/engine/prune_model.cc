#include "worker/engine/prune_model.h"

#include <chrono>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/architecture.h"
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
// input's layout and sharding.
absl::StatusOr<Writers> MirrorWeightFiles(const ModelDir& model, const std::string& output_dir,
                                          PruneReport& report) {
  Writers writers;
  for (const auto& file : model.files()) {
    std::vector<TensorDecl> decls;
    for (const auto& t : file->tensors()) decls.push_back({t.name, t.dtype, t.shape});
    const std::string name = BaseName(file->path());
    SHEARS_ASSIGN_OR_RETURN(writers[file.get()],
                            SafetensorsWriter::Create((fs::path(output_dir) / name).string(), decls, file->metadata()));
    report.files.push_back(name);
  }
  return writers;
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
  SHEARS_RETURN_IF_ERROR(MakeDirectories(options.output_dir));

  PruneReport report;
  SHEARS_ASSIGN_OR_RETURN(Writers writers, MirrorWeightFiles(*model, options.output_dir, report));
  torch::NoGradGuard no_grad;
  std::set<std::string> pruned;
  for (int b = 0; b < arch->num_blocks(); ++b) {
    if (observer.cancelled && observer.cancelled()) return absl::CancelledError("job cancelled");
    for (const auto& linear : arch->BlockLinears(b)) {
      const auto start = std::chrono::steady_clock::now();
      const auto* at = model->Find(linear.name);
      torch::Tensor weight = LoadTensor(*at->file, *at->info).to(device);
      SHEARS_RETURN_IF_ERROR(method->PruneLinear(weight, options.target_sparsity));
      torch::Tensor holder;
      SHEARS_RETURN_IF_ERROR(writers[at->file]->Write(linear.name, TensorBytes(weight, holder)));
      pruned.insert(linear.name);

      LayerReport layer{linear.name, b, weight.numel(), (holder == 0).sum().item<int64_t>(),
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
      report.parameters_before += layer.parameters;
      report.parameters_after += layer.parameters - layer.zeros;
      report.layers.push_back(layer);
      if (observer.on_layer) observer.on_layer(layer);
    }
    progress("pruning", double(b + 1) / arch->num_blocks(), absl::StrCat("block ", b + 1, "/", arch->num_blocks()));
  }

  progress("writing", 1.0, "copying the unpruned tensors");
  for (const auto& file : model->files()) {
    for (const auto& info : file->tensors()) {
      if (!pruned.count(info.name)) SHEARS_RETURN_IF_ERROR(writers[file.get()]->Write(info.name, file->Data(info)));
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
