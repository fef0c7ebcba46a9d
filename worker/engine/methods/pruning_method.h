#pragma once
// The interface every per-linear pruning method implements; method_registry.h picks one for a job.

#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "worker/engine/methods/linear_inputs.h"
#include "worker/engine/methods/sparsity_target.h"
#include "worker/engine/model/architecture.h"

namespace shears::engine {

// One linear layer of the block being pruned, as a method sees it.
struct LinearToPrune {
  std::string name;       // the weight's name within the block, e.g. "mlp.up_proj.weight"
  torch::Tensor weight;   // F32 [out, in] on the device (a view of the stored [in, out] for Conv1D)
  const LinearInputStats* inputs = nullptr;  // its calibration inputs, for calibrated methods
  double seconds = 0.0;   // the method's time on this layer, filled by PruneBlock
  std::optional<SparsityTarget> target;  // its own sparsity; unset: the block's
};

// One decoder block, pruned as a whole: the executor hands every linear over at once, so that a
// method may treat several together (SparseLLM's MLP).
struct BlockToPrune {
  int index = 0;
  std::vector<LinearToPrune> linears;  // in forward order
  const TensorMap* tensors = nullptr;   // all of the block's tensors (biases, norms)
  MlpLayout mlp;
  SparsityTarget target;

  LinearToPrune* Find(const std::string& name);
};

// A method prunes a model one decoder block at a time. A calibrated one first sees the inputs of
// the block's linear layers on the calibration windows, as the already pruned blocks before it
// produce them.
class PruningMethod {
 public:
  virtual ~PruningMethod() = default;
  // True makes the executor run the calibration windows through each block before pruning it and
  // gather every linear's input statistics.
  virtual bool NeedsCalibration() const { return false; }
  // What the method reads of the calibration inputs of the block's linear `name` (named within the
  // block): their Gram matrix (LinearInputStats::gram, Hessian), and the inputs whole (Inputs).
  // Without the Gram matrix only its diagonal, the input norms, is gathered: at an 11008-wide MLP
  // the down projection's is 485 MB. The executor adds the sample the reconstruction error is
  // measured on. Linears that read the same tensor (q/k/v, gate/up) must be answered alike.
  virtual InputsToGather InputsOf(const std::string& name, const MlpLayout& mlp) const {
    return InputsToGather{/*gram=*/false, /*inputs=*/false};
  }
  // True lets the executor hand the weights over in the dtype they are stored in (BF16, F16) when
  // nothing else reads the block (no calibration, no evaluation); F32 otherwise.
  virtual bool PrunesStoredDtype() const { return false; }
  // Prunes every linear of `block` to its target, in place. The default prunes them one by one.
  virtual absl::Status PruneBlock(BlockToPrune& block);
  // Prunes one linear's weight to `target`, in place.
  virtual absl::Status PruneLinear(LinearToPrune& linear, const SparsityTarget& target) = 0;
};

}  // namespace shears::engine
