#include "worker/engine/api/job_rules.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace shears::engine {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

bool InRange(double value, double low, double high) { return value >= low && value <= high; }

// A window length: at least 2 tokens (one predicted from another), at most kMaxSeqLen; 0 as well
// where it stands for the default.
absl::Status CheckSeqLen(const std::string& field, int64_t seq_len, bool zero_is_default = false) {
  if ((seq_len == 0 && zero_is_default) || (seq_len >= 2 && seq_len <= kMaxSeqLen)) return absl::OkStatus();
  return Invalid(field, absl::StrCat("must be in [2, ", kMaxSeqLen, "]", zero_is_default ? " (0: the default)" : "",
                                     ", got ", seq_len));
}

absl::Status CheckStructure(const PruneOptions& options) {
  const std::vector<Structure> supported = SupportedStructures(options.method);
  if (std::find(supported.begin(), supported.end(), options.structure) != supported.end()) return absl::OkStatus();
  std::vector<std::string> names;
  for (Structure s : supported) names.push_back(StructureName(s));
  return Invalid("structure", absl::StrCat(StructureName(options.structure), " is not supported with ",
                                           MethodName(options.method), " (it prunes ", absl::StrJoin(names, ", "),
                                           ")"));
}

// N:M needs its n and m, which nothing else may carry; target_sparsity, when set, must agree.
absl::Status CheckNM(const PruneOptions& options) {
  const bool given = options.n != 0 || options.m != 0;
  if (options.structure != Structure::kNM) {
    return given ? Invalid("n_m", "applies to STRUCTURE_N_M only") : absl::OkStatus();
  }
  if (!given) return Invalid("n_m", "is required with STRUCTURE_N_M (e.g. n: 2, m: 4)");
  if (options.m < 2 || options.m > 256) {
    return Invalid("n_m.m", absl::StrCat("must be in [2, 256], got ", options.m));
  }
  if (options.n < 1 || options.n >= options.m) {
    return Invalid("n_m.n", absl::StrCat("is out of range (n_m: N must be in [1, M), got ", options.n, ":",
                                         options.m, ")"));
  }
  const double implied = 1.0 - double(options.n) / double(options.m);
  if (options.target_sparsity != 0.0 && std::abs(options.target_sparsity - implied) > 1e-9) {
    return Invalid("target_sparsity", absl::StrCat("is ", options.target_sparsity, " but n_m ", options.n, ":",
                                                   options.m, " removes ", implied, "; leave it 0 or make them agree"));
  }
  return absl::OkStatus();
}

absl::Status CheckCalibration(const PruneOptions& options) {
  if (!options.calibration) {
    if (NeedsCalibration(options.method, options.low_rank.algorithm)) {
      return Invalid("calibration", absl::StrCat("is required by ", MethodName(options.method)));
    }
    return absl::OkStatus();
  }
  const CalibrationOptions& calibration = *options.calibration;
  if (calibration.path.empty()) return Invalid("calibration.dataset_uri", "is required");
  if (calibration.num_samples < 1 || calibration.num_samples > kMaxCalibrationSamples) {
    return Invalid("calibration.num_samples",
                   absl::StrCat("must be in [1, ", kMaxCalibrationSamples, "], got ", calibration.num_samples));
  }
  SHEARS_RETURN_IF_ERROR(CheckSeqLen("calibration.seq_len", calibration.seq_len));
  return absl::OkStatus();
}

absl::Status CheckSparseLlm(const PruneOptions& options) {
  const SparseLlmOptions& sl = options.sparsellm;
  const bool given = sl.iterations != 0 || sl.alpha != 0.0 || sl.beta != 0.0 || sl.gamma != 0.0;
  if (!given) return absl::OkStatus();
  if (options.method != Method::kSparseLlm) return Invalid("sparsellm", "applies to METHOD_SPARSELLM only");
  if (sl.iterations < 0 || sl.iterations > 100) {
    return Invalid("sparsellm.iterations", absl::StrCat("must be in [0, 100], got ", sl.iterations));
  }
  for (const auto& [name, value] : {std::pair<const char*, double>{"alpha", sl.alpha}, {"beta", sl.beta},
                                    {"gamma", sl.gamma}}) {
    if (!(value >= 0.0 && std::isfinite(value))) {
      return Invalid(absl::StrCat("sparsellm.", name), absl::StrCat("must be a non-negative number, got ", value));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckFineTune(const PruneOptions& options) {
  const std::string method = MethodName(options.method);
  if (!options.fine_tune) {
    if (NeedsFineTuning(options.method, options.low_rank.algorithm)) {
      return Invalid("fine_tune", absl::StrCat("is required by ", method,
                                               ", which fine-tunes while it prunes (fine_tune.dataset_uri names "
                                               "the data)"));
    }
    return absl::OkStatus();
  }
  if (!TakesFineTuning(options.method, options.structure, options.low_rank.algorithm)) {
    return Invalid("fine_tune", absl::StrCat("does not apply to ", method, " with ", StructureName(options.structure)));
  }
  const FineTuneOptions& tune = *options.fine_tune;
  if (tune.path.empty()) return Invalid("fine_tune.dataset_uri", "is required: fine-tuning needs a dataset");
  if (tune.steps < 0 || tune.steps > 1000000) {
    return Invalid("fine_tune.steps", absl::StrCat("must be in [0, 1000000], got ", tune.steps));
  }
  if (!(tune.learning_rate >= 0.0 && tune.learning_rate < 1.0)) {
    return Invalid("fine_tune.learning_rate", absl::StrCat("must be in [0, 1), got ", tune.learning_rate));
  }
  if (tune.batch_size < 0 || tune.batch_size > kMaxFineTuneBatch) {
    return Invalid("fine_tune.batch_size",
                   absl::StrCat("must be in [0, ", kMaxFineTuneBatch, "] (0: the default), got ", tune.batch_size));
  }
  SHEARS_RETURN_IF_ERROR(CheckSeqLen("fine_tune.seq_len", tune.seq_len, /*zero_is_default=*/true));
  if (tune.uniqueness_weight >= 0.0 && options.method != Method::kGum) {
    return Invalid("fine_tune.uniqueness_weight", "applies to METHOD_GUM only");
  }
  return absl::OkStatus();
}

// METHOD_PREDICTOR_SEARCH: a base method that prunes each layer to a ratio of its own, and budgets
// large enough to train and validate a predictor.
absl::Status CheckSearch(const PruneOptions& options) {
  const SearchOptions& search = options.search;
  if (options.method != Method::kPredictorSearch) {
    const bool given = search.base_method || search.measured_configurations != 0 || search.search_budget != 0 ||
                       search.max_deviation != 0.0 || search.score_windows != 0;
    return given ? Invalid("search", "applies to METHOD_PREDICTOR_SEARCH only") : absl::OkStatus();
  }
  if (options.structure == Structure::kFfnNeurons) {
    if (search.base_method != Method::kMagnitude) {
      return Invalid("search.base_method", "searching FFN neuron shares, neurons are scored by METHOD_MAGNITUDE");
    }
    if (options.allocation) return Invalid("allocation", "the search chooses each block's share of neurons itself");
  }
  if (!search.base_method) {
    return Invalid("search.base_method", "is required: METHOD_MAGNITUDE, METHOD_WANDA or METHOD_SPARSEGPT");
  }
  switch (*search.base_method) {
    case Method::kMagnitude:
    case Method::kWanda:
    case Method::kSparseGpt:
      break;
    default:
      return Invalid("search.base_method",
                     absl::StrCat(MethodName(*search.base_method),
                                  " cannot take a sparsity per layer (the search's base method is METHOD_MAGNITUDE, "
                                  "METHOD_WANDA or METHOD_SPARSEGPT)"));
  }
  if (search.measured_configurations != 0 && !InRange(search.measured_configurations, 10, 10000)) {
    return Invalid("search.measured_configurations",
                   absl::StrCat("must be in [10, 10000] to train and validate a predictor, got ",
                                search.measured_configurations));
  }
  if (search.search_budget != 0 && !InRange(search.search_budget, 50, 1000000)) {
    return Invalid("search.search_budget", absl::StrCat("must be in [50, 1000000], got ", search.search_budget));
  }
  if (!InRange(search.max_deviation, 0.0, 0.5)) {
    return Invalid("search.max_deviation", absl::StrCat("must be in [0, 0.5], got ", search.max_deviation));
  }
  if (!InRange(search.score_windows, 0, 1024)) {
    return Invalid("search.score_windows", absl::StrCat("must be in [0, 1024], got ", search.score_windows));
  }
  return absl::OkStatus();
}

// ALLOCATION_OWL varies the sparsity of unstructured pruning per block, from outliers measured on
// calibration data; its options also tune the predictor search's OWL seed.
absl::Status CheckOwl(const PruneOptions& options) {
  const OwlOptions& owl = options.owl;
  if (options.allocation == Allocation::kOwl) {
    if (options.structure != Structure::kUnstructured) {
      return Invalid("allocation", "ALLOCATION_OWL varies unstructured sparsity per block (STRUCTURE_UNSTRUCTURED)");
    }
    if (options.method != Method::kMagnitude && options.method != Method::kWanda &&
        options.method != Method::kSparseGpt) {
      return Invalid("allocation", absl::StrCat("ALLOCATION_OWL applies to METHOD_MAGNITUDE, METHOD_WANDA and "
                                                "METHOD_SPARSEGPT, not ", MethodName(options.method)));
    }
    if (!options.calibration) {
      return Invalid("calibration", "is required by ALLOCATION_OWL, which counts outliers in the activations");
    }
    if (options.target_sparsity <= 0.0) return Invalid("target_sparsity", "ALLOCATION_OWL needs a target above 0");
  } else if ((owl.outlier_multiple != 0.0 || owl.max_deviation != 0.0) && options.method != Method::kPredictorSearch) {
    return Invalid("owl", "applies to ALLOCATION_OWL and METHOD_PREDICTOR_SEARCH (its OWL seed) only");
  }
  if (owl.outlier_multiple != 0.0 && !InRange(owl.outlier_multiple, 1.0, 1000.0)) {
    return Invalid("owl.outlier_multiple", absl::StrCat("must be in [1, 1000] (0: the default), got ", owl.outlier_multiple));
  }
  if (owl.max_deviation != 0.0 && !InRange(owl.max_deviation, 0.0, 0.5)) {
    return Invalid("owl.max_deviation", absl::StrCat("must be in (0, 0.5] (0: the default), got ", owl.max_deviation));
  }
  return absl::OkStatus();
}

absl::Status CheckEvaluation(const PruneOptions& options) {
  if (!options.evaluation) return absl::OkStatus();
  const EvaluationOptions& eval = *options.evaluation;
  if (eval.path.empty()) return Invalid("evaluation.dataset_uri", "is required");
  SHEARS_RETURN_IF_ERROR(CheckSeqLen("evaluation.seq_len", eval.seq_len));
  if (eval.max_tokens < 0) return Invalid("evaluation.max_tokens", "must not be negative");
  return absl::OkStatus();
}

absl::Status CheckOutput(const PruneOptions& options) {
  if (RemovesStructures(options.structure) && options.format != OutputFormat::kDenseSafetensors) {
    return Invalid("output.format", "a model with structures removed is written as OUTPUT_FORMAT_DENSE_SAFETENSORS");
  }
  if (options.format == OutputFormat::kSparse24Bitmask &&
      !(options.structure == Structure::kNM && options.n == 2 && options.m == 4)) {
    return Invalid("output.format", "the sparse-24-bitmask format needs 2:4 sparsity (STRUCTURE_N_M with n_m 2:4)");
  }
  return absl::OkStatus();
}

}  // namespace

std::string MethodName(Method method) {
  switch (method) {
    case Method::kMagnitude:
      return "METHOD_MAGNITUDE";
    case Method::kRandom:
      return "METHOD_RANDOM";
    case Method::kWanda:
      return "METHOD_WANDA";
    case Method::kSparseGpt:
      return "METHOD_SPARSEGPT";
    case Method::kSparseLlm:
      return "METHOD_SPARSELLM";
    case Method::kBlockInfluence:
      return "METHOD_BLOCK_INFLUENCE";
    case Method::kLastBlocks:
      return "METHOD_LAST_BLOCKS";
    case Method::kMovement:
      return "METHOD_MOVEMENT";
    case Method::kGum:
      return "METHOD_GUM";
    case Method::kLowRank:
      return "METHOD_LOW_RANK";
    case Method::kPredictorSearch:
      return "METHOD_PREDICTOR_SEARCH";
    case Method::kActivation:
      return "METHOD_ACTIVATION";
  }
  return absl::StrCat("METHOD_", static_cast<int>(method));
}

std::string StructureName(Structure structure) {
  switch (structure) {
    case Structure::kUnstructured:
      return "STRUCTURE_UNSTRUCTURED";
    case Structure::kNM:
      return "STRUCTURE_N_M";
    case Structure::kLayers:
      return "STRUCTURE_LAYERS";
    case Structure::kFfnNeurons:
      return "STRUCTURE_FFN_NEURONS";
    case Structure::kRank:
      return "STRUCTURE_RANK";
    case Structure::kSublayers:
      return "STRUCTURE_SUBLAYERS";
    case Structure::kAttentionHeads:
      return "STRUCTURE_ATTENTION_HEADS";
  }
  return absl::StrCat("STRUCTURE_", static_cast<int>(structure));
}

std::vector<Structure> SupportedStructures(Method method) {
  switch (method) {
    case Method::kRandom:
      return {Structure::kUnstructured, Structure::kNM,        Structure::kLayers,
              Structure::kFfnNeurons,   Structure::kSublayers, Structure::kAttentionHeads};
    case Method::kBlockInfluence:
    case Method::kLastBlocks:
      return {Structure::kLayers, Structure::kSublayers};
    case Method::kMagnitude:
      return {Structure::kUnstructured, Structure::kNM, Structure::kFfnNeurons, Structure::kAttentionHeads};
    case Method::kActivation:
      return {Structure::kAttentionHeads};
    case Method::kMovement:
    case Method::kGum:
      return {Structure::kFfnNeurons};
    case Method::kLowRank:
      return {Structure::kRank};
    case Method::kWanda:
    case Method::kSparseGpt:
    case Method::kSparseLlm:
      return {Structure::kUnstructured, Structure::kNM};
    case Method::kPredictorSearch:
      return {Structure::kUnstructured, Structure::kFfnNeurons};
  }
  return {};
}

bool NeedsCalibration(Method method, LowRankAlgorithm low_rank) {
  switch (method) {
    case Method::kWanda:
    case Method::kSparseGpt:
    case Method::kSparseLlm:
    case Method::kBlockInfluence:
    case Method::kPredictorSearch:
    case Method::kActivation:
      return true;
    case Method::kLowRank:
      return low_rank == LowRankAlgorithm::kSvd;  // activation-aware: whitened by the inputs' Gram matrix
    default:
      return false;
  }
}

bool NeedsFineTuning(Method method, LowRankAlgorithm low_rank) {
  return method == Method::kMovement || method == Method::kGum ||
         (method == Method::kLowRank && low_rank == LowRankAlgorithm::kFlop);
}

bool TakesFineTuning(Method method, Structure structure, LowRankAlgorithm low_rank) {
  return NeedsFineTuning(method, low_rank) ||
         (structure == Structure::kFfnNeurons && method != Method::kPredictorSearch);
}

bool RemovesStructures(Structure structure) {
  return structure == Structure::kLayers || structure == Structure::kFfnNeurons || structure == Structure::kRank ||
         structure == Structure::kSublayers || structure == Structure::kAttentionHeads;
}

absl::Status CheckJobRules(const PruneOptions& options) {
  if (auto st = CheckStructure(options); !st.ok()) return st;
  if (!(options.target_sparsity >= 0.0 && options.target_sparsity < 1.0)) {
    return Invalid("target_sparsity", absl::StrCat("must be in [0, 1), got ", options.target_sparsity));
  }
  if (auto st = CheckNM(options); !st.ok()) return st;
  if (auto st = CheckCalibration(options); !st.ok()) return st;
  if (options.neuron_measures && !options.calibration) {
    return Invalid("neuron_measures", "needs calibration data: the neurons are measured on its windows");
  }
  if (auto st = CheckSparseLlm(options); !st.ok()) return st;
  if (auto st = CheckFineTune(options); !st.ok()) return st;
  if (auto st = CheckSearch(options); !st.ok()) return st;
  const LowRankOptions& low_rank = options.low_rank;
  if ((low_rank.algorithm != LowRankAlgorithm::kSvd || low_rank.dense_output) && options.method != Method::kLowRank) {
    return Invalid("low_rank", "applies to METHOD_LOW_RANK only");
  }
  if (options.method == Method::kGum && options.allocation == Allocation::kUniform) {
    return Invalid("allocation", "METHOD_GUM selects neurons globally across blocks (ALLOCATION_GLOBAL)");
  }
  if (auto st = CheckEvaluation(options); !st.ok()) return st;
  if (auto st = CheckOutput(options); !st.ok()) return st;
  if (auto st = CheckOwl(options); !st.ok()) return st;
  if (options.allocation && options.allocation != Allocation::kOwl && options.structure != Structure::kFfnNeurons &&
      options.structure != Structure::kAttentionHeads) {
    return Invalid("allocation", "ALLOCATION_UNIFORM and ALLOCATION_GLOBAL apply to STRUCTURE_FFN_NEURONS and "
                                 "STRUCTURE_ATTENTION_HEADS (ALLOCATION_OWL to STRUCTURE_UNSTRUCTURED)");
  }
  if (options.sublayers && options.structure != Structure::kSublayers) {
    return Invalid("sublayers", "applies to STRUCTURE_SUBLAYERS only");
  }
  if (options.width_multiple != 0) {
    const bool uniform_heads =
        options.structure == Structure::kAttentionHeads && options.allocation.value_or(Allocation::kUniform) == Allocation::kUniform;
    if (options.structure != Structure::kFfnNeurons && !uniform_heads) {
      return Invalid("width_multiple",
                     "applies to STRUCTURE_FFN_NEURONS and to STRUCTURE_ATTENTION_HEADS with ALLOCATION_UNIFORM only "
                     "(merging KV heads per block keeps divisors of the KV heads)");
    }
    if (options.method == Method::kPredictorSearch) {
      return Invalid("width_multiple", "the predictor search does not align the widths it searches yet");
    }
    if (!InRange(options.width_multiple, 1, kMaxWidthMultiple)) {
      return Invalid("width_multiple", absl::StrCat("must be in [0, ", kMaxWidthMultiple, "], got ", options.width_multiple));
    }
  }
  return absl::OkStatus();
}

}  // namespace shears::engine
