#include "common/job_spec.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/uri.h"

namespace shears {
namespace {

// The structures each method supports in this build; the first is its default.
std::vector<v1::Structure> SupportedStructures(v1::Method method) {
  switch (method) {
    case v1::METHOD_RANDOM:
      return {v1::STRUCTURE_UNSTRUCTURED, v1::STRUCTURE_N_M, v1::STRUCTURE_LAYERS, v1::STRUCTURE_FFN_NEURONS};
    case v1::METHOD_BLOCK_INFLUENCE:
    case v1::METHOD_LAST_BLOCKS:
      return {v1::STRUCTURE_LAYERS};
    case v1::METHOD_MAGNITUDE:
      return {v1::STRUCTURE_UNSTRUCTURED, v1::STRUCTURE_N_M, v1::STRUCTURE_FFN_NEURONS};
    case v1::METHOD_MOVEMENT:
    case v1::METHOD_GUM:
      return {v1::STRUCTURE_FFN_NEURONS};
    case v1::METHOD_LOW_RANK:
      return {v1::STRUCTURE_RANK};
    case v1::METHOD_WANDA:
    case v1::METHOD_SPARSEGPT:
    case v1::METHOD_SPARSELLM:
      return {v1::STRUCTURE_UNSTRUCTURED, v1::STRUCTURE_N_M};
    case v1::METHOD_PREDICTOR_SEARCH:
      return {v1::STRUCTURE_UNSTRUCTURED, v1::STRUCTURE_FFN_NEURONS};
    default:
      return {};
  }
}

// Methods that learn from activations and cannot run without calibration data.
bool NeedsCalibration(const v1::JobSpec& spec) {
  const v1::Method method = spec.method();
  return method == v1::METHOD_WANDA || method == v1::METHOD_SPARSEGPT || method == v1::METHOD_SPARSELLM ||
         method == v1::METHOD_BLOCK_INFLUENCE || method == v1::METHOD_PREDICTOR_SEARCH ||
         (method == v1::METHOD_LOW_RANK && spec.low_rank().algorithm() != v1::LOW_RANK_FLOP);
}

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("spec.", field, ": ", what));
}

// METHOD_PREDICTOR_SEARCH: a base method that prunes each layer to a ratio of its own, and
// budgets large enough to train and validate a predictor.
absl::Status ValidateSearch(const v1::JobSpec& spec) {
  if (spec.method() != v1::METHOD_PREDICTOR_SEARCH) {
    return spec.has_search() ? Invalid("search", "applies to METHOD_PREDICTOR_SEARCH only") : absl::OkStatus();
  }
  const auto& search = spec.search();
  if (spec.structure() == v1::STRUCTURE_FFN_NEURONS) {
    if (search.base_method() != v1::METHOD_MAGNITUDE) {
      return Invalid("search.base_method", "searching FFN neuron shares, neurons are scored by METHOD_MAGNITUDE");
    }
    if (spec.allocation() != v1::ALLOCATION_UNSPECIFIED) {
      return Invalid("allocation", "the search chooses each block's share of neurons itself");
    }
  }
  switch (search.base_method()) {
    case v1::METHOD_MAGNITUDE:
    case v1::METHOD_WANDA:
    case v1::METHOD_SPARSEGPT:
      break;
    case v1::METHOD_UNSPECIFIED:
      return Invalid("search.base_method", "is required: METHOD_MAGNITUDE, METHOD_WANDA or METHOD_SPARSEGPT");
    default:
      return Invalid("search.base_method",
                     absl::StrCat(v1::Method_Name(search.base_method()),
                                  " cannot take a sparsity per layer (the search's base method is METHOD_MAGNITUDE, "
                                  "METHOD_WANDA or METHOD_SPARSEGPT)"));
  }
  if (search.measured_configurations() != 0 &&
      (search.measured_configurations() < 10 || search.measured_configurations() > 10000)) {
    return Invalid("search.measured_configurations",
                   absl::StrCat("must be in [10, 10000] to train and validate a predictor, got ",
                                search.measured_configurations()));
  }
  if (search.search_budget() != 0 && (search.search_budget() < 50 || search.search_budget() > 1000000)) {
    return Invalid("search.search_budget", absl::StrCat("must be in [50, 1000000], got ", search.search_budget()));
  }
  if (!(search.max_deviation() >= 0.0 && search.max_deviation() <= 0.5)) {
    return Invalid("search.max_deviation", absl::StrCat("must be in [0, 0.5], got ", search.max_deviation()));
  }
  if (search.score_windows() < 0 || search.score_windows() > 1024) {
    return Invalid("search.score_windows", absl::StrCat("must be in [0, 1024], got ", search.score_windows()));
  }
  return absl::OkStatus();
}

absl::Status ValidateUri(const std::string& field, const std::string& uri) {
  if (uri.empty()) return Invalid(field, "is required");
  auto parsed = ParseUri(uri);
  if (!parsed.ok()) return Invalid(field, std::string(parsed.status().message()));
  if (!IsSupportedScheme(parsed->scheme)) {
    return Invalid(field, absl::StrCat("scheme '", parsed->scheme, "' is not supported (supported: ",
                                       SupportedSchemes(), ")"));
  }
  if (parsed->scheme == "file") {
    if (auto path = LocalPath(uri); !path.ok()) return Invalid(field, std::string(path.status().message()));
  }
  return absl::OkStatus();
}

// N:M needs its n_m, which nothing else may carry; target_sparsity, when set, must agree with it.
absl::Status ValidateNM(const v1::JobSpec& spec) {
  if (spec.structure() != v1::STRUCTURE_N_M) {
    if (spec.has_n_m()) return Invalid("n_m", "applies to STRUCTURE_N_M only");
    return absl::OkStatus();
  }
  if (!spec.has_n_m()) return Invalid("n_m", "is required with STRUCTURE_N_M (e.g. n: 2, m: 4)");
  const int n = spec.n_m().n(), m = spec.n_m().m();
  if (m < 2 || m > 256) return Invalid("n_m.m", absl::StrCat("must be in [2, 256], got ", m));
  if (n < 1 || n >= m) {
    return Invalid("n_m.n", absl::StrCat("must be at least 1 and less than M (", m, "), got ", n));
  }
  const double implied = 1.0 - double(n) / double(m);
  if (spec.target_sparsity() != 0.0 && std::abs(spec.target_sparsity() - implied) > 1e-9) {
    return Invalid("target_sparsity", absl::StrCat("is ", spec.target_sparsity(), " but n_m ", n, ":", m,
                                                   " removes ", implied, "; leave it 0 or make them agree"));
  }
  return absl::OkStatus();
}

// Methods that fine-tune while they prune and cannot run without fine-tuning data.
bool NeedsFineTuning(const v1::JobSpec& spec) {
  return spec.method() == v1::METHOD_MOVEMENT || spec.method() == v1::METHOD_GUM ||
         (spec.method() == v1::METHOD_LOW_RANK && spec.low_rank().algorithm() == v1::LOW_RANK_FLOP);
}

absl::Status ValidateFineTune(const v1::JobSpec& spec) {
  const std::string method = v1::Method_Name(spec.method());
  if (!spec.has_fine_tune()) {
    if (NeedsFineTuning(spec)) {
      return Invalid("fine_tune", absl::StrCat("is required by ", method, " (fine-tuning data)"));
    }
    return absl::OkStatus();
  }
  const bool takes_it = NeedsFineTuning(spec) || (spec.structure() == v1::STRUCTURE_FFN_NEURONS);
  if (!takes_it) return Invalid("fine_tune", absl::StrCat("does not apply to ", method, " with ",
                                                          v1::Structure_Name(spec.structure())));
  const auto& tune = spec.fine_tune();
  if (tune.dataset_uri().empty()) {
    return Invalid("fine_tune.dataset_uri", "is required: fine-tuning needs a dataset");
  }
  if (auto st = ValidateUri("fine_tune.dataset_uri", tune.dataset_uri()); !st.ok()) return st;
  if (tune.steps() < 0 || tune.steps() > 1000000) {
    return Invalid("fine_tune.steps", absl::StrCat("must be in [0, 1000000], got ", tune.steps()));
  }
  if (!(tune.learning_rate() >= 0.0 && tune.learning_rate() < 1.0)) {
    return Invalid("fine_tune.learning_rate", absl::StrCat("must be in [0, 1), got ", tune.learning_rate()));
  }
  if (tune.batch_size() < 0) return Invalid("fine_tune.batch_size", "must not be negative");
  if (tune.seq_len() < 0 || tune.seq_len() == 1) {
    return Invalid("fine_tune.seq_len", absl::StrCat("must be at least 2 (0: the default), got ", tune.seq_len()));
  }
  if (tune.has_uniqueness_weight()) {
    if (spec.method() != v1::METHOD_GUM) return Invalid("fine_tune.uniqueness_weight", "applies to METHOD_GUM only");
    if (!(tune.uniqueness_weight() >= 0.0 && std::isfinite(tune.uniqueness_weight()))) {
      return Invalid("fine_tune.uniqueness_weight", "must be a non-negative number");
    }
  }
  return absl::OkStatus();
}

// Every dataset URI the spec names, by field.
std::vector<std::pair<std::string, std::string>> DatasetUris(const v1::JobSpec& spec) {
  std::vector<std::pair<std::string, std::string>> out;
  if (spec.has_calibration()) out.emplace_back("calibration.dataset_uri", spec.calibration().dataset_uri());
  if (spec.has_evaluation()) out.emplace_back("evaluation.dataset_uri", spec.evaluation().dataset_uri());
  if (spec.has_fine_tune()) out.emplace_back("fine_tune.dataset_uri", spec.fine_tune().dataset_uri());
  return out;
}

}  // namespace

absl::Status CheckFileRoots(const v1::JobSpec& spec, const std::vector<std::string>& roots) {
  auto uris = DatasetUris(spec);
  uris.emplace_back("model_uri", spec.model_uri());
  uris.emplace_back("output.uri", spec.output().uri());
  for (const auto& [field, uri] : uris) {
    if (absl::Status st = CheckFileRoots(uri, roots); !st.ok()) {
      return absl::PermissionDeniedError(absl::StrCat("spec.", field, ": ", st.message()));
    }
  }
  return absl::OkStatus();
}

void ApplySpecDefaults(v1::JobSpec& spec) {
  if (spec.structure() == v1::STRUCTURE_UNSPECIFIED) {
    auto supported = SupportedStructures(spec.method());
    if (!supported.empty()) spec.set_structure(supported.front());
  }
  if (spec.output().format() == v1::OUTPUT_FORMAT_UNSPECIFIED) {
    spec.mutable_output()->set_format(v1::OUTPUT_FORMAT_DENSE_SAFETENSORS);
  }
}

absl::Status ValidateSpec(const v1::JobSpec& spec) {
  if (auto st = ValidateUri("model_uri", spec.model_uri()); !st.ok()) return st;
  if (spec.method() == v1::METHOD_UNSPECIFIED || !v1::Method_IsValid(spec.method())) {
    return Invalid("method", "is required (e.g. METHOD_MAGNITUDE)");
  }
  auto supported = SupportedStructures(spec.method());
  if (supported.empty()) {
    return Invalid("method", absl::StrCat(v1::Method_Name(spec.method()), " is not supported yet"));
  }
  if (std::find(supported.begin(), supported.end(), spec.structure()) == supported.end()) {
    return Invalid("structure", absl::StrCat(v1::Structure_Name(spec.structure()), " is not supported with ",
                                             v1::Method_Name(spec.method())));
  }
  if (!(spec.target_sparsity() >= 0.0 && spec.target_sparsity() < 1.0)) {
    return Invalid("target_sparsity", absl::StrCat("must be in [0, 1), got ", spec.target_sparsity()));
  }
  if (auto st = ValidateNM(spec); !st.ok()) return st;
  if (spec.has_calibration()) {
    const auto& calib = spec.calibration();
    if (auto st = ValidateUri("calibration.dataset_uri", calib.dataset_uri()); !st.ok()) return st;
    if (calib.num_samples() < 1) {
      return Invalid("calibration.num_samples", absl::StrCat("must be at least 1, got ", calib.num_samples()));
    }
    if (calib.seq_len() < 2) return Invalid("calibration.seq_len", absl::StrCat("must be at least 2, got ", calib.seq_len()));
    if (calib.max_tokens() != 0) return Invalid("calibration.max_tokens", "applies to evaluation only");
  } else if (NeedsCalibration(spec)) {
    return Invalid("calibration", absl::StrCat("is required by ", v1::Method_Name(spec.method())));
  }
  if (spec.has_sparsellm()) {
    const auto& sl = spec.sparsellm();
    if (spec.method() != v1::METHOD_SPARSELLM) return Invalid("sparsellm", "applies to METHOD_SPARSELLM only");
    if (sl.iterations() < 0 || sl.iterations() > 100) {
      return Invalid("sparsellm.iterations", absl::StrCat("must be in [0, 100], got ", sl.iterations()));
    }
    for (const auto& [name, value] : {std::pair<const char*, double>{"alpha", sl.alpha()},
                                      {"beta", sl.beta()},
                                      {"gamma", sl.gamma()}}) {
      if (!(value >= 0.0 && std::isfinite(value))) {
        return Invalid(absl::StrCat("sparsellm.", name), absl::StrCat("must be a non-negative number, got ", value));
      }
    }
  }
  if (auto st = ValidateFineTune(spec); !st.ok()) return st;
  if (auto st = ValidateSearch(spec); !st.ok()) return st;
  if (spec.has_low_rank()) {
    if (spec.method() != v1::METHOD_LOW_RANK) return Invalid("low_rank", "applies to METHOD_LOW_RANK only");
    if (!v1::LowRankAlgorithm_IsValid(spec.low_rank().algorithm())) {
      return Invalid("low_rank.algorithm", absl::StrCat("unknown algorithm ", spec.low_rank().algorithm()));
    }
  }
  if (spec.method() == v1::METHOD_GUM && spec.allocation() == v1::ALLOCATION_UNIFORM) {
    return Invalid("allocation", "METHOD_GUM selects neurons globally across blocks (ALLOCATION_GLOBAL)");
  }
  if (spec.has_evaluation()) {
    const auto& eval = spec.evaluation();
    if (auto st = ValidateUri("evaluation.dataset_uri", eval.dataset_uri()); !st.ok()) return st;
    if (eval.seq_len() < 2) return Invalid("evaluation.seq_len", absl::StrCat("must be at least 2, got ", eval.seq_len()));
    if (eval.num_samples() != 0) {
      return Invalid("evaluation.num_samples", "evaluation uses every window; cap it with max_tokens");
    }
    if (eval.max_tokens() < 0) return Invalid("evaluation.max_tokens", "must not be negative");
  }
  if (auto st = ValidateUri("output.uri", spec.output().uri()); !st.ok()) return st;
  if (const auto out = ParseUri(spec.output().uri()); IsReadOnlyScheme(out->scheme)) {
    return Invalid("output.uri", absl::StrCat(out->scheme, ":// can be read from but not written to"));
  }
  for (const auto& [field, uri] : DatasetUris(spec)) {
    if (ParseUri(uri)->scheme == "hf") return Invalid(field, "hf:// names a model repository, not a dataset file");
  }
  if (absl::StripSuffix(spec.output().uri(), "/") == absl::StripSuffix(spec.model_uri(), "/")) {
    return Invalid("output.uri", "must differ from model_uri, or the input model would be overwritten");
  }
  if (!v1::OutputFormat_IsValid(spec.output().format())) {
    return Invalid("output.format", absl::StrCat("unknown format ", spec.output().format()));
  }
  const bool physical = spec.structure() == v1::STRUCTURE_LAYERS || spec.structure() == v1::STRUCTURE_FFN_NEURONS ||
                        spec.structure() == v1::STRUCTURE_RANK;
  if (physical && spec.output().format() != v1::OUTPUT_FORMAT_DENSE_SAFETENSORS) {
    return Invalid("output.format", "a model with structures removed is written as OUTPUT_FORMAT_DENSE_SAFETENSORS");
  }
  if (!v1::Allocation_IsValid(spec.allocation())) {
    return Invalid("allocation", absl::StrCat("unknown allocation ", spec.allocation()));
  }
  if (spec.allocation() != v1::ALLOCATION_UNSPECIFIED && spec.structure() != v1::STRUCTURE_FFN_NEURONS) {
    return Invalid("allocation", "applies to STRUCTURE_FFN_NEURONS only");
  }
  if (spec.output().format() == v1::OUTPUT_FORMAT_SPARSE_24_BITMASK &&
      !(spec.structure() == v1::STRUCTURE_N_M && spec.n_m().n() == 2 && spec.n_m().m() == 4)) {
    return Invalid("output.format", "OUTPUT_FORMAT_SPARSE_24_BITMASK needs STRUCTURE_N_M with n_m 2:4");
  }
  for (const auto& [key, value] : spec.labels()) {
    if (key.empty() || key.size() > 63) return Invalid("labels", absl::StrCat("key '", key, "' must be 1-63 characters"));
  }
  return absl::OkStatus();
}

}  // namespace shears
