#pragma once
// Sublayer removal: ShortGPT's Block Influence taken one level down. Each decoder block adds an
// attention sublayer and then an MLP sublayer to the residual stream; a sublayer whose output
// stream is nearly its input (influence 1 − mean cos(x_in, x_out) on calibration data near 0)
// is removed whole, the stream passing through. The most redundant sublayers go first until
// their parameters come nearest target_sparsity × the blocks' parameters; METHOD_LAST_BLOCKS
// (from the last block's MLP backwards) and METHOD_RANDOM (seeded) are the baselines.
//
// The output is written in the Nemotron-NAS layout (io/nemotron_nas.h: block_configs with no_op
// sublayers), which vLLM's DeciLMForCausalLM serves; a block that loses both sublayers is
// removed and the rest renumbered, so a choice of whole blocks only is the family's own config.
// Llama-family models that layout expresses (Llama, Mistral without sliding windows, Nemotron-NAS).

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture.h"

namespace shears::engine {

absl::StatusOr<PruneReport> RemoveSublayers(const PruneOptions& options, const PruneObserver& observer,
                                            const ModelDir& model, const Architecture& arch, torch::Device device);

}  // namespace shears::engine
