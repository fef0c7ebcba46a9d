#include "worker/engine/structured/sublayer_removal.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include <c10/util/accumulate.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/engine/io/nemotron_nas.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/structured/rewritten_model.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {
namespace {

struct Sublayer {
  int block = 0;
  bool attention = false;  // else the MLP
  int64_t parameters = 0;
  std::optional<double> influence;
};

// A block tensor's sublayer, by its name relative to the block (Llama's names): attention takes
// its input norm with it, the MLP post_attention_layernorm, as vLLM's DeciLM lays out a no_op.
bool InAttention(const std::string& name) {
  return absl::StartsWith(name, "self_attn.") || absl::StartsWith(name, "input_layernorm.");
}

// Every sublayer of the model in block order, attention before MLP, with its Block Influence on
// the dense model when measured.
std::vector<Sublayer> SublayersOf(const Architecture& arch, const RedundancyReport* dense) {
  std::vector<Sublayer> out;
  for (int b = 0; b < arch.num_blocks(); ++b) {
    int64_t attention = 0, mlp = 0;
    for (const auto& spec : arch.BlockTensors(b)) {
      (InAttention(spec.name) ? attention : mlp) += c10::multiply_integers(spec.shape);
    }
    const BlockRedundancy* measured = dense != nullptr ? &dense->blocks[b] : nullptr;
    if (arch.config().HasAttention(b)) {
      out.push_back({b, true, attention, measured ? measured->attention_influence : std::nullopt});
    }
    if (arch.config().HasMlp(b)) out.push_back({b, false, mlp, measured ? measured->mlp_influence : std::nullopt});
  }
  return out;
}

std::string Describe(const std::vector<RemovedSublayer>& removed) {
  std::vector<int> attention, mlp;
  for (const auto& r : removed) (r.sublayer == "attention" ? attention : mlp).push_back(r.block);
  std::sort(attention.begin(), attention.end());
  std::sort(mlp.begin(), mlp.end());
  return absl::StrCat("removing the attention of blocks [", absl::StrJoin(attention, ", "), "] and the MLP of blocks [",
                      absl::StrJoin(mlp, ", "), "]");
}

}  // namespace

absl::StatusOr<PruneReport> RemoveSublayers(const PruneOptions& options, const PruneObserver& observer,
                                            const ModelDir& model, const Architecture& arch, torch::Device device) {
  if (!arch.SplitsIntoSublayers() || !ExpressibleAsNemotronNas(arch.config())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "structure: STRUCTURE_SUBLAYERS writes the Nemotron-NAS layout, which expresses llama, and mistral without "
        "sliding windows, with biases on all of attention's linears or none; model_type ",
        arch.config().model_type, " is not one of them"));
  }
  JobDatasets data(model, arch.config(), &observer);
  BlockRunner runner(model, arch, device);
  PruneReport report;
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor calibration, MeasureDenseModel(options, observer, data, runner, report));
  // The job rules (CheckJobRules, before any driver runs) require calibration for Block Influence.
  const std::vector<Sublayer> sublayers = SublayersOf(arch, report.redundancy.empty() ? nullptr : &report.redundancy[0]);
  for (const auto& s : sublayers) report.parameters_before += s.parameters;
  const Sublayers kinds = options.sublayers.value_or(Sublayers::kAll);
  std::vector<Sublayer> candidates;
  for (const auto& s : sublayers) {
    if (kinds == Sublayers::kAll || s.attention == (kinds == Sublayers::kAttention)) candidates.push_back(s);
  }

  // The longest prefix of the ranking that brings the parameters removed nearer the budget,
  // skipping a sublayer whose removal would leave a model vLLM cannot run (an FFN before the
  // first attention).
  const double budget = options.target_sparsity * double(report.parameters_before);
  std::vector<BlockShape> shapes = BlockShapesOf(arch.config());
  int64_t removed = 0;
  OrderForRemoval(options, candidates, [](const Sublayer& a, const Sublayer& b) { return *a.influence < *b.influence; });
  for (const auto& s : candidates) {
    if (std::abs(double(removed + s.parameters) - budget) >= std::abs(double(removed) - budget)) break;
    std::vector<BlockShape> trial = shapes;
    (s.attention ? trial[s.block].kv_heads : trial[s.block].ffn) = 0;
    if (!CheckServableShapes(trial).ok()) continue;
    shapes = std::move(trial);
    removed += s.parameters;
    report.removed_sublayers.push_back({s.block, s.attention ? "attention" : "mlp", s.influence, s.parameters});
    report.layers.push_back(
        {arch.BlockPrefix(s.block) + (s.attention ? "self_attn" : "mlp"), s.block, s.parameters, s.parameters, -1.0, 0.0});
    if (observer.on_layer) observer.on_layer(report.layers.back());
  }
  report.parameters_after = report.parameters_before - removed;

  // A block left with neither sublayer goes, the rest renumbered.
  std::vector<int> kept;
  std::vector<BlockShape> kept_shapes;
  for (int b = 0; b < arch.num_blocks(); ++b) {
    if (shapes[b].kv_heads == 0 && shapes[b].ffn == 0) {
      report.removed_blocks.push_back(b);
      continue;
    }
    kept.push_back(b);
    kept_shapes.push_back(shapes[b]);
  }
  nlohmann::json config =
      ConfigWithBlocks(model.config(), arch.config(), kept, [&](int b) { return arch.BlockPrefix(b); });
  SHEARS_ASSIGN_OR_RETURN(const ModelConfig cut, ModelConfig::Parse(config));
  SHEARS_ASSIGN_OR_RETURN(config, ConfigWithBlockShapes(config, cut, kept_shapes));
  const TensorEditor edit = KeepBlocks(arch, kept, [&](int b, const std::string& name) {
    return (InAttention(name) ? shapes[b].kv_heads : shapes[b].ffn) == 0;
  });
  SHEARS_RETURN_IF_ERROR(WriteAndEvaluate(options, observer, model, edit, config, Describe(report.removed_sublayers),
                                          data, runner, device, calibration, report));
  return report;
}

}  // namespace shears::engine
