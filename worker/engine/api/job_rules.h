#pragma once
// The rules every job obeys, whoever runs it: which structures a method prunes, what data it needs,
// which outputs are physically smaller, and the ranges of every number. The server checks a
// JobSpec with them at CreateJob (common/job_spec.h translates it first) and the engine checks its
// options with them before it runs (`run-local`, tests, the worker), so the two cannot disagree.
// What depends on the model itself (an N:M group that does not tile a layer, a seq_len past the
// model's positions, too little data) is the engine's to check once the model is open.
//
// Errors are INVALID_ARGUMENT naming the JobSpec field relative to the spec ("structure: ...");
// the server adds "spec.".

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/engine/api/options.h"

namespace shears::engine {

// The public API's names (shears.v1): "METHOD_WANDA", "STRUCTURE_N_M".
std::string MethodName(Method method);
std::string StructureName(Structure structure);

// The structures `method` prunes, its default first.
std::vector<Structure> SupportedStructures(Method method);
// The method learns from activations and cannot run without calibration data.
bool NeedsCalibration(Method method, LowRankAlgorithm low_rank);
// The method fine-tunes while it prunes and cannot run without fine-tuning data.
bool NeedsFineTuning(Method method, LowRankAlgorithm low_rank);
// Fine-tuning data is allowed: the methods that need it, and FFN-neuron pruning by any score, so
// that methods compare at one budget.
bool TakesFineTuning(Method method, Structure structure, LowRankAlgorithm low_rank);
// The structure is physically removed: the output is a smaller dense model with its config
// rewritten, never a compressed sparse layout.
bool RemovesStructures(Structure structure);

// The longest window of tokens a job may ask for (calibration, evaluation, fine-tuning): 32768,
// Qwen3's native context and a quarter of Llama-3.1's. A block pass over one window costs time
// quadratic in its length (the attention scores); past this, a job would run for days, not fail.
inline constexpr int64_t kMaxSeqLen = 32768;

// The most calibration windows a job may ask for: SparseGPT and Wanda use 128, the papers' largest
// sweeps 2048; past this the activations a block pass keeps run to terabytes at 7B widths.
inline constexpr int64_t kMaxCalibrationSamples = 65536;
// The largest fine-tuning batch (windows a step): far past what one GPU holds at any seq_len.
inline constexpr int64_t kMaxFineTuneBatch = 4096;

// The largest JobSpec.width_multiple: wider than any FFN of a published model.
inline constexpr int64_t kMaxWidthMultiple = 65536;

// OK, or the first rule `options` breaks. Dataset paths are only checked for presence (the server
// sees URIs there, the engine local files).
absl::Status CheckJobRules(const PruneOptions& options);

}  // namespace shears::engine
