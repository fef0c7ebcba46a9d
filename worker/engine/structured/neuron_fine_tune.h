#pragma once
// FFN neurons pruned gradually while the model fine-tunes, with movement pruning's cubic schedule
// (Sanh et al.): nothing is masked for the first 10% of the steps, the masked share rises along a
// cubic to the target at 70%, and the last 30% fine-tune the final mask. What ranks the neurons is
// the method's:
//   magnitude  the norm of the neuron's weights as they are now;
//   random     seeded scores drawn once;
//   movement   −Σ W·∂L/∂W over the neuron's weights, accumulated over the steps (how much
//              fine-tuning pulls them away from zero);
//   GUM        movement ranked across all blocks together (top-v), with a loss term on the squared
//              cosine between the surviving neurons' activations, which pushes them apart so
//              that the ones kept are unique (Santacroce et al.).

#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/training/trainer.h"

namespace shears::engine {

constexpr double kDefaultUniquenessWeight = 1.0;

// The sparsity movement pruning's schedule asks for after `step` of `steps`.
double CubicSparsity(int64_t step, int64_t steps, double target);

// Mean over pairs of neurons kept (`keep` 1/0 per neuron) of their activations' squared cosine;
// `activations` [..., neurons].
torch::Tensor UniquenessPenalty(const torch::Tensor& activations, const torch::Tensor& keep);

struct FineTunedNeurons {
  ModelWeights weights;              // fine-tuned, every neuron still in place
  std::vector<torch::Tensor> pruned;  // per block, bool per neuron
};

// Fine-tunes the model on `ids` (1-D tokens) under options.fine_tune while pruning its neurons.
absl::StatusOr<FineTunedNeurons> FineTuneNeurons(const PruneOptions& options, const PruneObserver& observer,
                                                 const ModelDir& model, const Architecture& arch,
                                                 torch::Device device, const torch::Tensor& ids);

}  // namespace shears::engine
