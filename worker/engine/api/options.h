#pragma once
// What a pruning run is asked to do. Plain C++ with neither LibTorch nor protobuf: the server
// checks a JobSpec against the job rules (job_rules.h) in this form, and the worker fills it from
// the JobSpec to run the engine.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace shears::engine {

enum class Method {
  kMagnitude, kRandom, kWanda, kSparseGpt, kSparseLlm, kBlockInfluence, kLastBlocks, kMovement, kGum, kLowRank,
  kPredictorSearch, kActivation
};
enum class Structure { kUnstructured, kNM, kLayers, kFfnNeurons, kRank, kSublayers, kAttentionHeads };

// How the target is spread over the blocks. Structured pruning: the same share of each, or the
// lowest scores across all blocks together. Unstructured: the same share of each, or OWL's. Unset
// in PruneOptions: the method's own (uniform; GUM is global).
enum class Allocation { kUniform, kGlobal, kOwl };

// Allocation::kOwl (Yin et al., "Outlier Weighed Layerwise Sparsity"): a block with more outlier
// Wanda scores keeps more of its weights. Zeros take the published defaults (allocation/owl.h).
struct OwlOptions {
  double outlier_multiple = 0.0;  // M: a score above M times its block's mean is an outlier
  double max_deviation = 0.0;     // λ: block sparsities spread over 2λ around the target
};

// Structure::kSublayers: the kinds of sublayer that may be removed.
enum class Sublayers { kAll, kAttention, kMlp };

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
  // magnitude-scored FFN neurons. Required; set only for METHOD_PREDICTOR_SEARCH.
  std::optional<Method> base_method;
  int measured_configurations = 0;  // pruned and scored to train (70%) and validate (30%) the predictor
  int search_budget = 0;            // configurations the predictor scores during the search
  double max_deviation = 0.0;       // how far a module's sparsity may stray from the target
  int score_windows = 0;            // held-out calibration windows that score a configuration
};

// The dataset paths below are local files when the engine runs; while the server checks a spec
// they hold its URIs (only their presence matters to the job rules).
struct PruneOptions {
  std::string model_dir;   // a local Hugging Face model directory
  std::string output_dir;  // created if missing; files are overwritten
  Method method = Method::kMagnitude;
  Structure structure = Structure::kUnstructured;
  double target_sparsity = 0.0;
  int n = 0, m = 0;  // with Structure::kNM
  // Structure::kFfnNeurons and kAttentionHeads; kOwl with kUnstructured (magnitude, Wanda, SparseGPT).
  std::optional<Allocation> allocation;
  OwlOptions owl;  // Allocation::kOwl, and the predictor search's OWL seed
  SparseLlmOptions sparsellm;
  OutputFormat format = OutputFormat::kDenseSafetensors;
  uint64_t seed = 0;
  std::string device = "cpu";  // "cpu" or "cuda:N"
  std::optional<EvaluationOptions> evaluation;
  std::optional<CalibrationOptions> calibration;
  // With calibration: the FFN neuron measures too (analysis/redundancy.h), not only Block Influence.
  bool neuron_measures = false;
  std::optional<FineTuneOptions> fine_tune;
  LowRankOptions low_rank;
  SearchOptions search;
  // Per-layer sparsities by full weight name (the predictor search's configurations): each named
  // linear loses exactly round(sparsity × size) weights; the others take target_sparsity.
  std::map<std::string, double> linear_sparsity;
  // FFN-neuron pruning at per-block shares (the predictor search): exactly this many neurons go
  // from each block; empty: target_sparsity spread by `allocation`.
  std::vector<int64_t> neurons_removed;
  // Structure::kFfnNeurons: every block's kept width rounded to a multiple of this (0 or 1: none);
  // Structure::kAttentionHeads (uniform): the kept number of KV heads.
  int64_t width_multiple = 0;
  // Structure::kSublayers only; unset: kAll.
  std::optional<Sublayers> sublayers;
  // Where per-block checkpoints go; a run finding one made from the same inputs resumes after
  // its last finished block. Empty: no checkpoints.
  std::string checkpoint_dir;
};

}  // namespace shears::engine
