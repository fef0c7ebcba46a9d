#include "worker/engine/run/prune_pass.h"

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/api/job_rules.h"
#include "worker/engine/io/compressed_tensors.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/methods/method_registry.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/run/checkpoint.h"
#include "worker/engine/run/staging.h"
#include "worker/engine/run/unstructured_pass.h"
#include "worker/engine/runtime/device.h"
#include "worker/engine/structured/attention_heads.h"
#include "worker/engine/structured/ffn_neurons.h"
#include "worker/engine/structured/layer_removal.h"
#include "worker/engine/structured/low_rank.h"
#include "worker/engine/structured/sublayer_removal.h"

namespace shears::engine {
namespace {

using StructuredDriver = absl::StatusOr<PruneReport> (*)(const PruneOptions&, const PruneObserver&, const ModelDir&,
                                                         const Architecture&, torch::Device);

// The driver of a structure that is removed from the model.
StructuredDriver DriverOf(Structure structure) {
  switch (structure) {
    case Structure::kLayers:
      return RemoveBlocks;
    case Structure::kFfnNeurons:
      return PruneFfnNeurons;
    case Structure::kRank:
      return PruneLowRank;
    case Structure::kSublayers:
      return RemoveSublayers;
    case Structure::kAttentionHeads:
      return PruneAttentionHeads;
    default:
      return nullptr;
  }
}

}  // namespace

absl::StatusOr<PruneReport> RunPruningPass(const PruneOptions& options, const PruneObserver& observer,
                                           std::unique_ptr<PruningMethod> method) {
  if (observer.on_progress) observer.on_progress("loading", 0.0, absl::StrCat("reading ", options.model_dir));
  SHEARS_ASSIGN_OR_RETURN(auto model, ModelDir::Open(options.model_dir));
  // Named by the input as the job gave it, so that a retried attempt finds its checkpoint.
  const std::string fingerprint = CheckpointFingerprint(options, *model);
  std::string input_dir = options.model_dir;
  if (!SparsityFormat(model->config()).empty()) {
    // A compressed model (ours or llm-compressor's) is pruned and evaluated in its dense form.
    input_dir = StagingDir(options, "input");
    SHEARS_RETURN_IF_ERROR(DecompressModel(options.model_dir, input_dir));
    SHEARS_ASSIGN_OR_RETURN(model, ModelDir::Open(input_dir));
  }
  SHEARS_ASSIGN_OR_RETURN(auto arch, MakeArchitecture(model->config()));
  SHEARS_RETURN_IF_ERROR(arch->CheckWeights(*model));
  SHEARS_ASSIGN_OR_RETURN(const torch::Device device, ParseDevice(options.device));
  torch::NoGradGuard no_grad;
  absl::StatusOr<PruneReport> report;
  if (RemovesStructures(options.structure)) {
    report = DriverOf(options.structure)(options, observer, *model, *arch, device);
  } else {
    if (method == nullptr) {
      SHEARS_ASSIGN_OR_RETURN(method, MakePruningMethod(options));
    }
    report = PruneBlockByBlock(options, observer, *model, *arch, device, std::move(method), fingerprint);
  }
  if (report.ok() && input_dir != options.model_dir) SHEARS_RETURN_IF_ERROR(RemoveAll(input_dir));
  return report;
}

}  // namespace shears::engine
