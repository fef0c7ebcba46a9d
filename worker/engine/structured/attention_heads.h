#pragma once
// Attention-head pruning (STRUCTURE_ATTENTION_HEADS), GQA-aware: target_sparsity is the share of
// the attention parameters removed, and heads go as KV groups so that every query head keeps the
// key and value it was trained with.
// - ALLOCATION_UNIFORM: the same number of KV groups (a KV head with its query heads) leaves
//   every block, the lowest scored by magnitude, at random, or by their query heads' contribution
//   to the attention output on calibration data (METHOD_ACTIVATION); written in the family's own
//   config with num_attention_heads, num_key_value_heads and head_dim rewritten.
// - ALLOCATION_GLOBAL: query heads stay (the Nemotron-NAS layout has one count for all blocks);
//   each block's KV heads are merged into fewer (kv_merge.h), the blocks chosen where merging
//   costs least: the relative change of the merged K/V weights (magnitude), of the attention
//   output on the calibration windows (activation), or a seeded order (random). Written in the
//   Nemotron-NAS layout (per-block n_heads_in_group), or the stock config when all blocks end
//   alike. The KV cache shrinks with every merge; the query heads' compute does not.

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture.h"

namespace shears::engine {

absl::StatusOr<PruneReport> PruneAttentionHeads(const PruneOptions& options, const PruneObserver& observer,
                                                const ModelDir& model, const Architecture& arch, torch::Device device);

}  // namespace shears::engine
