#pragma once
// What a pruning run is asked to do, and what it reports back. Plain C++: the worker fills these from
// the protobuf JobSpec, so the engine has neither gRPC nor protobuf in it.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace shears::engine {

enum class Method {
  kMagnitude, kRandom, kWanda, kSparseGpt, kSparseLlm, kBlockInfluence, kLastBlocks, kMovement, kGum, kLowRank,
  kPredictorSearch
};
enum class Structure { kUnstructured, kNM, kLayers, kFfnNeurons, kRank };

// How structured pruning spreads the target over the blocks: the same share of each, or the
// lowest scores across all blocks together.
enum class Allocation { kUniform, kGlobal };

// How much of each weight matrix goes: a fraction, or N:M (at most n non-zero weights in every
// group of m consecutive inputs of a row, the layout sparse tensor cores run).
struct SparsityTarget {
  double sparsity = 0.0;
  int n = 0, m = 0;  // 0: unstructured
  // Prune exactly round(sparsity × size) of the matrix even where the method compares weights
  // within rows (Wanda): each row loses the same number and the rows whose next score is lowest
  // one more. Per-layer sparsities (the predictor search) set it, so that a configuration's total
  // is exact.
  bool exact_count = false;
  bool n_m() const { return m > 0; }
};

// The on-disk layout of the pruned model.
enum class OutputFormat {
  kDenseSafetensors,  // zeros stored as zeros; loads anywhere
  kSparseBitmask,     // compressed-tensors "sparse-bitmask"
  kSparse24Bitmask,   // compressed-tensors "sparse-24-bitmask" (2:4 only)
};

// SparseLLM's alternating optimization of each MLP. Zeros take the reference code's defaults for
// the architecture: 8 iterations with penalties of 5 for gated MLPs (its LLaMA script), 10 with
// 0.1 for the others (its OPT script).
struct SparseLlmOptions {
  int iterations = 0;
  double alpha = 0.0;  // ties the pre-activation to the up (and gate) projection's output
  double beta = 0.0;   // ties the MLP's output to the down projection of the activation
  double gamma = 0.0;  // ties the activation to the nonlinearity of the pre-activation
};

// Perplexity measured before and after pruning, the protocol the papers report on WikiText-2.
struct EvaluationOptions {
  std::string path;  // a local dataset file (see dataset.h for the formats)
  int64_t seq_len = 0;
  int64_t max_tokens = 0;  // 0: all
};

// Calibration windows for methods that learn from activations (SparseGPT's and Wanda's sampling).
struct CalibrationOptions {
  std::string path;  // a local dataset file (see dataset.h for the formats)
  int64_t num_samples = 0;
  int64_t seq_len = 0;
  uint64_t seed = 0;
};

// Fine-tuning while pruning (movement, GUM, FLOP; magnitude and random FFN pruning take it too, so
// methods compare at the same budget). Zeros take the defaults in fine_tune.h.
struct FineTuneOptions {
  std::string path;  // a local dataset file (see dataset.h for the formats)
  int64_t steps = 0;
  double learning_rate = 0.0;
  int64_t batch_size = 0;
  int64_t seq_len = 0;
  bool distill = false;  // learn the dense model's next-token distribution as well as the data
  double uniqueness_weight = -1.0;  // GUM's cosine-similarity term; negative: the default
};

// METHOD_LOW_RANK: learned gates during fine-tuning (FLOP) or a training-free truncated SVD
// whitened by the calibration inputs.
enum class LowRankAlgorithm { kSvd, kFlop };

struct LowRankOptions {
  LowRankAlgorithm algorithm = LowRankAlgorithm::kSvd;
  bool dense_output = false;  // write W = P·Q multiplied out instead of the factors
};

// METHOD_PREDICTOR_SEARCH (Ji et al.): per-module sparsities searched with a learned predictor
// of their perplexity. Zeros take the defaults in predictor_search.h.
struct SearchOptions {
  // Prunes each configuration: magnitude, Wanda or SparseGPT weights; with Structure::kFfnNeurons,
  // magnitude-scored FFN neurons.
  Method base_method = Method::kWanda;
  int measured_configurations = 0;  // pruned and scored to train (70%) and validate (30%) the predictor
  int search_budget = 0;            // configurations the predictor scores during the search
  double max_deviation = 0.0;       // how far a module's sparsity may stray from the target
  int score_windows = 0;            // held-out calibration windows that score a configuration
};

struct PruneOptions {
  std::string model_dir;   // a local Hugging Face model directory
  std::string output_dir;  // created if missing; files are overwritten
  Method method = Method::kMagnitude;
  Structure structure = Structure::kUnstructured;
  double target_sparsity = 0.0;
  int n = 0, m = 0;  // with Structure::kNM
  Allocation allocation = Allocation::kUniform;
  SparseLlmOptions sparsellm;
  OutputFormat format = OutputFormat::kDenseSafetensors;
  uint64_t seed = 0;
  std::string device = "cpu";  // "cpu" or "cuda:N"
  std::optional<EvaluationOptions> evaluation;
  std::optional<CalibrationOptions> calibration;
  std::optional<FineTuneOptions> fine_tune;
  LowRankOptions low_rank;
  SearchOptions search;
  // Per-layer sparsities by full weight name (the predictor search's configurations): each named
  // linear loses exactly round(sparsity × size) weights; the others take target_sparsity.
  std::map<std::string, double> linear_sparsity;
  // FFN-neuron pruning at per-block shares (the predictor search): exactly this many neurons go
  // from each block; empty: target_sparsity spread by `allocation`.
  std::vector<int64_t> neurons_removed;
  // Where per-block checkpoints go; a run finding one made from the same inputs resumes after
  // its last finished block. Empty: no checkpoints.
  std::string checkpoint_dir;
};

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
  std::vector<BlockSparsity> sparsity;
  std::optional<double> uniform_perplexity;  // on the evaluation windows
  double search_seconds = 0.0;
};

struct PruneReport {
  int64_t parameters_before = 0;  // prunable parameters
  int64_t parameters_after = 0;   // of those, the non-zero ones after pruning
  std::vector<LayerReport> layers;
  std::vector<std::string> files;  // written into output_dir, relative names
  std::optional<EvaluationReport> evaluation;
  // Structured pruning: blocks removed (input indices), and every parameter of the model counted
  // in the files before and after.
  std::vector<int> removed_blocks;
  int64_t model_parameters_before = 0;
  int64_t model_parameters_after = 0;
  std::vector<RedundancyReport> redundancy;
  std::optional<SearchReport> search;

  double achieved_sparsity() const {
    return parameters_before == 0 ? 0.0 : 1.0 - double(parameters_after) / double(parameters_before);
  }
};

// Called from the pruning thread. `cancelled` is polled between layers.
struct PruneObserver {
  std::function<void(const std::string& stage, double fraction, const std::string& message)> on_progress;
  std::function<void(const LayerReport&)> on_layer;
  std::function<void(const RedundancyReport&)> on_redundancy;
  std::function<bool()> cancelled;
};

}  // namespace shears::engine
