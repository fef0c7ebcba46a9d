#pragma once
// Per-block checkpoints: after each block, what is needed to go on from the next one, in one file
// replaced atomically, so that a retried attempt resumes at the first unfinished block.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/io/model_dir.h"

namespace shears::engine {

struct Checkpoint {
  int blocks_done = 0;
  std::vector<LayerReport> layers;
  // Hidden states after the last finished block, by name ("dense", "pruned").
  std::map<std::string, torch::Tensor> activations;
  // The pruned model's Block Influence of each finished block, when measured along the way.
  std::vector<BlockRedundancy> influences;
};

// Names the inputs a checkpoint belongs to: the weight files' names, sizes and times, and every
// option that changes the output.
std::string CheckpointFingerprint(const PruneOptions& options, const ModelDir& model);

// `fingerprint` names the inputs the checkpoint belongs to.
absl::Status SaveCheckpoint(const std::string& dir, const std::string& fingerprint, const Checkpoint& checkpoint);
// The checkpoint in `dir`, or nullopt when there is none or it belongs to other inputs.
std::optional<Checkpoint> LoadCheckpoint(const std::string& dir, const std::string& fingerprint,
                                         const torch::Device& device);

}  // namespace shears::engine
