#pragma once
// What a pruning run reports: per layer as it goes, the redundancy measures, the evaluation and the
// search, and the observer that streams them. Plain C++, like options.h.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "worker/engine/api/stage_clock.h"

namespace shears::engine {

struct LayerReport {
  std::string name;
  int block = 0;
  int64_t parameters = 0;
  int64_t zeros = 0;  // after pruning
  // ‖WX − ŴX‖² / ‖WX‖² over the calibration inputs X of the layer; negative without calibration.
  double reconstruction_error = -1.0;
  double seconds = 0.0;
};

struct EvaluationReport {
  int64_t windows = 0;
  int64_t seq_len = 0;
  int64_t predicted_tokens = 0;
  double dense_perplexity = 0.0;
  double pruned_perplexity = 0.0;
};

// ShortGPT's Block Influence of one decoder block on the calibration windows:
// 1 − mean over tokens of cos(x_in, x_out).
struct BlockRedundancy {
  int block = 0;  // index in the model it was measured on
  double block_influence = 0.0;
  // The same between each sublayer's input and output, for families whose blocks add attention
  // then the MLP to the residual stream; unset for a sublayer the block lacks.
  std::optional<double> attention_influence;
  std::optional<double> mlp_influence;
};

// One sublayer that sublayer removal took out.
struct RemovedSublayer {
  int block = 0;          // input index
  std::string sublayer;   // "attention" or "mlp"
  std::optional<double> influence;
  int64_t parameters = 0;  // its tensors' (linears and norm)
};

// One number per neuron of an FFN, and its summary (events carry only the summary).
struct NeuronMeasure {
  std::vector<double> values;
  double mean = 0.0, p50 = 0.0, p90 = 0.0, max = 0.0;
};

// How alike and how needed the neurons of one FFN are on the calibration tokens (the framework of
// Santacroce et al.), from their activations, the down projection's inputs.
struct FfnRedundancy {
  int block = 0;
  int64_t neurons = 0;
  // Mean over neuron pairs of the cosine between their activations across the tokens.
  double mean_pairwise_cosine = 0.0;
  // Each neuron's largest cosine with another neuron (1 for a duplicate).
  NeuronMeasure max_cosine;
  // The share of each neuron's activation that the other neurons of its FFN cannot reproduce by
  // least squares (1: unlike any combination of them, 0: redundant).
  NeuronMeasure uniqueness;
  // First-order estimate of the loss change when the neuron is removed: |Σ_t a_t · ∂L/∂a_t|.
  NeuronMeasure sensitivity;
  // exp of the entropy of the normalized singular values of the activation matrix [tokens,
  // neurons] (Roy & Vetterli): how many directions the activations really span.
  double effective_rank = 0.0;
};

// The redundancy measures of one model (the dense one, or the pruned one).
struct RedundancyReport {
  std::string model;  // "dense" or "pruned"
  std::vector<BlockRedundancy> blocks;
  std::vector<FfnRedundancy> ffns;
};

// The sparsity the predictor search chose for one block's attention and MLP weights.
struct BlockSparsity {
  int block = 0;
  double attention = 0.0, mlp = 0.0;
};

struct SearchReport {
  int measured_configurations = 0;
  int training_configurations = 0;
  double validation_rank_correlation = 0.0;  // Spearman, predicted vs measured, validation split
  int searched_configurations = 0;
  double uniform_score = 0.0;   // perplexity on the held-out calibration windows
  double searched_score = 0.0;
  std::optional<double> owl_score;  // OWL's allocation, measured among the first (weights only)
  std::vector<BlockSparsity> sparsity;
  std::optional<double> uniform_perplexity;  // on the evaluation windows
  double search_seconds = 0.0;
};

// Allocation::kOwl: one block's outlier share and the sparsity it was given.
struct OwlBlock {
  int block = 0;
  double outlier_ratio = 0.0;  // of its Wanda scores, the share above M times their mean
  double sparsity = 0.0;       // of its linear weights, as pruned (the exact budget's rounding in it)
};

struct OwlReport {
  double outlier_multiple = 0.0, max_deviation = 0.0;  // as run (defaults filled in)
  std::vector<OwlBlock> blocks;
};

struct PruneReport {
  int64_t parameters_before = 0;  // prunable parameters
  int64_t parameters_after = 0;   // of those, the non-zero ones after pruning
  std::vector<LayerReport> layers;
  std::vector<std::string> files;  // written into output_dir, relative names
  // sha256 (hex) of files of `files` whose digest was computed as they were written.
  std::map<std::string, std::string> digests;
  std::optional<EvaluationReport> evaluation;
  // Structured pruning: blocks removed (input indices), and every parameter of the model counted
  // in the files before and after.
  std::vector<int> removed_blocks;
  std::vector<RemovedSublayer> removed_sublayers;
  int64_t model_parameters_before = 0;
  int64_t model_parameters_after = 0;
  std::vector<RedundancyReport> redundancy;
  std::optional<SearchReport> search;
  std::optional<OwlReport> owl;
  // Seconds per stage of the engine's run.
  std::vector<StageTime> stages;

  double achieved_sparsity() const {
    return parameters_before == 0 ? 0.0 : 1.0 - double(parameters_after) / double(parameters_before);
  }
};

// After each block of a block-by-block pass: how far it is and how long the rest should take.
struct BlockProgress {
  int blocks_done = 0;
  int blocks = 0;
  double seconds_per_block = 0.0;  // over the blocks this attempt pruned
  double seconds_left = 0.0;       // the blocks left at that pace
  std::vector<StageTime> stages;   // so far
};

// Called from the pruning thread. `cancelled` is polled between layers. `clock`, when set, times
// the stages of the run (PruneModel sets it).
struct PruneObserver {
  std::function<void(const std::string& stage, double fraction, const std::string& message)> on_progress;
  std::function<void(const BlockProgress&)> on_block;
  std::function<void(const LayerReport&)> on_layer;
  std::function<void(const RedundancyReport&)> on_redundancy;
  std::function<bool()> cancelled;
  StageClock* clock = nullptr;
};

// `observer` with a nested run's progress mapped into [from, from + share) of the job's; the
// returned observer refers to `observer`, which must outlive it.
inline PruneObserver Within(const PruneObserver& observer, double from, double share) {
  PruneObserver out = observer;
  if (observer.on_progress) {
    out.on_progress = [&observer, from, share](const std::string& stage, double fraction, const std::string& message) {
      observer.on_progress(stage, from + share * fraction, message);
    };
  }
  return out;
}

// Times a scope into the observer's clock, if it has one.
inline StageClock::Scope Timed(const PruneObserver& observer, std::string stage) {
  return StageClock::Scope(observer.clock, std::move(stage));
}

}  // namespace shears::engine
