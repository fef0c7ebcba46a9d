#include <c10/util/accumulate.h>

#include "worker/engine/structured/ffn_neurons.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/io/nemotron_nas.h"
#include "worker/engine/methods/masks.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/structured/neuron_fine_tune.h"
#include "worker/engine/structured/neuron_scores.h"
#include "worker/engine/structured/rewritten_model.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {

namespace {

// The neurons each block keeps, ascending.
absl::StatusOr<std::vector<torch::Tensor>> KeptNeurons(const std::vector<torch::Tensor>& pruned, double sparsity) {
  std::vector<torch::Tensor> keep;
  for (size_t b = 0; b < pruned.size(); ++b) {
    if (pruned[b].numel() > 0 && pruned[b].all().item<bool>()) {
      return absl::InvalidArgumentError(
          absl::StrCat("target_sparsity: ", sparsity, " would remove every FFN neuron of block ", b));
    }
    keep.push_back(pruned[b].logical_not().nonzero().reshape(-1));
  }
  return keep;
}

}  // namespace

absl::StatusOr<PruneReport> PruneFfnNeurons(const PruneOptions& options, const PruneObserver& observer,
                                            const ModelDir& model, const Architecture& arch, torch::Device device) {
  SHEARS_RETURN_IF_ERROR(CheckWidthMultiple(arch.config(), options.width_multiple));
  const int blocks = arch.num_blocks();
  const NeuronAxes axes = NeuronAxesOf(arch);
  BlockRunner runner(model, arch, device);
  JobDatasets data(model, arch.config(), &observer);

  PruneReport report;
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor calibration, MeasureDenseModel(options, observer, data, runner, report));
  // Fine-tuning leaves new weights and the neurons its schedule kept; otherwise score once.
  std::optional<ModelWeights> tuned;
  std::vector<torch::Tensor> pruned;
  if (options.fine_tune) {
    SHEARS_ASSIGN_OR_RETURN(torch::Tensor ids, data.FineTuneIds(*options.fine_tune));
    SHEARS_ASSIGN_OR_RETURN(FineTunedNeurons result, FineTuneNeurons(options, observer, model, arch, device, ids));
    tuned = std::move(result.weights);
    pruned = std::move(result.pruned);
  } else {
    std::vector<torch::Tensor> scores;
    for (int b = 0; b < blocks; ++b) {
      if (!arch.config().HasMlp(b)) {  // a Nemotron-NAS block without FFN has no neuron to score
        scores.push_back(torch::empty({0}));
        continue;
      }
      scores.push_back(options.method == Method::kRandom ? RandomScores(options.seed, b, arch.config().FfnOf(b))
                                                         : MagnitudeScores(runner.LoadBlock(b), axes));
    }
    if (options.neurons_removed.empty()) {
      pruned = LowestNeurons(scores, options.target_sparsity, options.allocation.value_or(Allocation::kUniform),
                             options.width_multiple);
    } else {
      for (int b = 0; b < blocks; ++b) pruned.push_back(LowestEntries(scores[b], options.neurons_removed[b]));
    }
  }
  SHEARS_ASSIGN_OR_RETURN(std::vector<torch::Tensor> keep, KeptNeurons(pruned, options.target_sparsity));

  std::vector<BlockShape> shapes = BlockShapesOf(arch.config());
  for (int b = 0; b < blocks; ++b) {
    const int64_t before = pruned[b].numel(), after = keep[b].numel();
    shapes[b].ffn = after;
    int64_t parameters = 0;  // of the tensors the neurons run through, each fused linear's part apart
    for (const auto& spec : arch.BlockTensors(b)) {
      if (axes.count(spec.name) != 0) parameters += c10::multiply_integers(spec.shape);
    }
    const int64_t removed = before == 0 ? 0 : parameters / before * (before - after);
    report.parameters_before += parameters;
    report.parameters_after += parameters - removed;
    report.layers.push_back({arch.BlockPrefix(b) + "mlp", b, parameters, removed, -1.0, 0.0});
    if (observer.on_layer) observer.on_layer(report.layers.back());
  }

  SHEARS_ASSIGN_OR_RETURN(nlohmann::json config, ConfigWithBlockShapes(model.config(), arch.config(), shapes));
  const TensorEditor edit = [&](const std::string& name) {
    const int b = arch.BlockOf(name);
    TensorEdit e{false, name};
    if (tuned) e.value = TensorByName(*tuned, arch, name);
    if (b < 0) return e;
    auto axis = axes.find(name.substr(arch.BlockPrefix(b).size()));
    if (axis != axes.end()) {
      e.dim = axis->second;
      e.index = keep[b];
    }
    return e;
  };
  SHEARS_RETURN_IF_ERROR(WriteAndEvaluate(options, observer, model, edit, config, "removing FFN neurons", data, runner,
                                          device, calibration, report));
  return report;
}

}  // namespace shears::engine
