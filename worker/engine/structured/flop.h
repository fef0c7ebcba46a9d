#pragma once
// FLOP (Wang, Wohlwend and Lei, "Structured pruning of large language models"): each linear
// weight is reparameterized as W = P·diag(z)·Q, initialized by its SVD (P = U√S, Q = √S Vᵀ),
// with a hard-concrete (L0) gate z_k per rank-1 component. The model fine-tunes with the loss
// plus λ₁(s − t) + λ₂(s − t)², where s is the expected parameter count of the factors under the
// gates (as a share of the dense weights') and t the target, annealed linearly from the start
// size over the first half of the steps; the multipliers rise by gradient ascent, so the
// constraint tightens until it holds. At the end the components whose gates are closed go.

#include <map>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/training/trainer.h"

namespace shears::engine {

// Factors of one weight in nn.Linear's orientation: W ≈ u [out, r] · v [r, in].
struct LowRankFactors {
  torch::Tensor u, v;
};

struct FlopResult {
  ModelWeights weights;  // fine-tuned; the factored weights are left out
  std::map<std::string, LowRankFactors> factors;  // by full weight name, gates folded into u
  double expected_size = 0.0;  // s at the end, as a share of the dense weights' parameters
  double final_size = 0.0;     // the same with the closed components dropped
};

// Fine-tunes on `ids` (1-D tokens) under options.fine_tune with every block linear factored.
absl::StatusOr<FlopResult> TrainFlop(const PruneOptions& options, const PruneObserver& observer,
                                     const ModelDir& model, const Architecture& arch, torch::Device device,
                                     const torch::Tensor& ids);

}  // namespace shears::engine
