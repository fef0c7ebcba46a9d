#include "common/job_translation.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shears {
namespace {

using engine::Method;
using engine::Structure;

// Each engine method and the proto value that names it.
constexpr std::pair<Method, v1::Method> kMethods[] = {
    {Method::kMagnitude, v1::METHOD_MAGNITUDE},
    {Method::kRandom, v1::METHOD_RANDOM},
    {Method::kWanda, v1::METHOD_WANDA},
    {Method::kSparseGpt, v1::METHOD_SPARSEGPT},
    {Method::kSparseLlm, v1::METHOD_SPARSELLM},
    {Method::kBlockInfluence, v1::METHOD_BLOCK_INFLUENCE},
    {Method::kLastBlocks, v1::METHOD_LAST_BLOCKS},
    {Method::kMovement, v1::METHOD_MOVEMENT},
    {Method::kGum, v1::METHOD_GUM},
    {Method::kLowRank, v1::METHOD_LOW_RANK},
    {Method::kPredictorSearch, v1::METHOD_PREDICTOR_SEARCH},
    {Method::kActivation, v1::METHOD_ACTIVATION},
};

constexpr std::pair<Structure, v1::Structure> kStructures[] = {
    {Structure::kUnstructured, v1::STRUCTURE_UNSTRUCTURED},
    {Structure::kNM, v1::STRUCTURE_N_M},
    {Structure::kLayers, v1::STRUCTURE_LAYERS},
    {Structure::kFfnNeurons, v1::STRUCTURE_FFN_NEURONS},
    {Structure::kRank, v1::STRUCTURE_RANK},
    {Structure::kSublayers, v1::STRUCTURE_SUBLAYERS},
    {Structure::kAttentionHeads, v1::STRUCTURE_ATTENTION_HEADS},
};

absl::StatusOr<Structure> StructureOf(v1::Structure structure) {
  for (const auto& [engine_structure, proto] : kStructures) {
    if (proto == structure) return engine_structure;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "spec.structure: ",
      v1::Structure_IsValid(structure) ? v1::Structure_Name(structure) : absl::StrCat("value ", structure),
      " is not supported yet"));
}

absl::StatusOr<std::optional<engine::Sublayers>> SublayersOf(v1::Sublayers sublayers) {
  switch (sublayers) {
    case v1::SUBLAYERS_UNSPECIFIED:
      return std::nullopt;
    case v1::SUBLAYERS_ALL:
      return engine::Sublayers::kAll;
    case v1::SUBLAYERS_ATTENTION:
      return engine::Sublayers::kAttention;
    case v1::SUBLAYERS_MLP:
      return engine::Sublayers::kMlp;
    default:
      return absl::InvalidArgumentError(absl::StrCat("spec.sublayers: unknown value ", sublayers));
  }
}

absl::StatusOr<engine::OutputFormat> FormatOf(v1::OutputFormat format) {
  switch (format) {
    case v1::OUTPUT_FORMAT_UNSPECIFIED:
    case v1::OUTPUT_FORMAT_DENSE_SAFETENSORS:
      return engine::OutputFormat::kDenseSafetensors;
    case v1::OUTPUT_FORMAT_SPARSE_BITMASK:
      return engine::OutputFormat::kSparseBitmask;
    case v1::OUTPUT_FORMAT_SPARSE_24_BITMASK:
      return engine::OutputFormat::kSparse24Bitmask;
    default:
      return absl::InvalidArgumentError(absl::StrCat("spec.output.format: unknown format ", format));
  }
}

absl::StatusOr<std::optional<engine::Allocation>> AllocationOf(v1::Allocation allocation) {
  switch (allocation) {
    case v1::ALLOCATION_UNSPECIFIED:
      return std::nullopt;
    case v1::ALLOCATION_UNIFORM:
      return engine::Allocation::kUniform;
    case v1::ALLOCATION_GLOBAL:
      return engine::Allocation::kGlobal;
    case v1::ALLOCATION_OWL:
      return engine::Allocation::kOwl;
    default:
      return absl::InvalidArgumentError(absl::StrCat("spec.allocation: unknown allocation ", allocation));
  }
}

absl::StatusOr<engine::LowRankAlgorithm> LowRankAlgorithmOf(v1::LowRankAlgorithm algorithm) {
  switch (algorithm) {
    case v1::LOW_RANK_ALGORITHM_UNSPECIFIED:
    case v1::LOW_RANK_SVD:
      return engine::LowRankAlgorithm::kSvd;
    case v1::LOW_RANK_FLOP:
      return engine::LowRankAlgorithm::kFlop;
    default:
      return absl::InvalidArgumentError(absl::StrCat("spec.low_rank.algorithm: unknown algorithm ", algorithm));
  }
}

void ToProto(const engine::NeuronMeasure& measure, bool per_neuron, v1::NeuronMeasure& out) {
  out.set_mean(measure.mean);
  out.set_p50(measure.p50);
  out.set_p90(measure.p90);
  out.set_max(measure.max);
  if (per_neuron) *out.mutable_values() = {measure.values.begin(), measure.values.end()};
}

v1::SearchResult ToProto(const engine::SearchReport& search, v1::Method base_method) {
  v1::SearchResult out;
  out.set_base_method(base_method);
  out.set_measured_configurations(search.measured_configurations);
  out.set_training_configurations(search.training_configurations);
  out.set_validation_rank_correlation(search.validation_rank_correlation);
  out.set_searched_configurations(search.searched_configurations);
  out.set_uniform_score(search.uniform_score);
  out.set_searched_score(search.searched_score);
  if (search.owl_score) out.set_owl_score(*search.owl_score);
  for (const auto& block : search.sparsity) {
    auto* b = out.add_sparsity();
    b->set_block(block.block);
    b->set_attention(block.attention);
    b->set_mlp(block.mlp);
  }
  if (search.uniform_perplexity) out.set_uniform_perplexity(*search.uniform_perplexity);
  out.set_search_seconds(search.search_seconds);
  return out;
}

}  // namespace

absl::StatusOr<engine::PruneOptions> EngineOptions(const v1::JobSpec& spec) {
  engine::PruneOptions options;
  SHEARS_ASSIGN_OR_RETURN(options.method, EngineMethod(spec.method(), "spec.method"));
  SHEARS_ASSIGN_OR_RETURN(options.structure, StructureOf(spec.structure()));
  options.target_sparsity = spec.target_sparsity();
  options.n = spec.n_m().n();
  options.m = spec.n_m().m();
  SHEARS_ASSIGN_OR_RETURN(options.allocation, AllocationOf(spec.allocation()));
  options.owl = {spec.owl().outlier_multiple(), spec.owl().max_deviation()};
  options.sparsellm = {spec.sparsellm().iterations(), spec.sparsellm().alpha(), spec.sparsellm().beta(),
                       spec.sparsellm().gamma()};
  SHEARS_ASSIGN_OR_RETURN(options.format, FormatOf(spec.output().format()));
  options.seed = spec.seed();
  if (spec.has_evaluation()) {
    const auto& eval = spec.evaluation();
    options.evaluation = engine::EvaluationOptions{eval.dataset_uri(), eval.seq_len(), eval.max_tokens()};
  }
  if (spec.has_calibration()) {
    const auto& calib = spec.calibration();
    options.calibration =
        engine::CalibrationOptions{calib.dataset_uri(), calib.num_samples(), calib.seq_len(), calib.seed()};
  }
  options.neuron_measures = spec.neuron_measures();
  options.width_multiple = spec.width_multiple();
  SHEARS_ASSIGN_OR_RETURN(options.sublayers, SublayersOf(spec.sublayers()));
  if (spec.has_fine_tune()) {
    const auto& tune = spec.fine_tune();
    // A weight the caller left out is negative: the method's default.
    const double uniqueness = tune.has_uniqueness_weight() ? tune.uniqueness_weight() : -1.0;
    options.fine_tune = engine::FineTuneOptions{tune.dataset_uri(), tune.steps(),   tune.learning_rate(),
                                                tune.batch_size(),  tune.seq_len(), tune.distill(),
                                                uniqueness};
  }
  SHEARS_ASSIGN_OR_RETURN(options.low_rank.algorithm, LowRankAlgorithmOf(spec.low_rank().algorithm()));
  options.low_rank.dense_output = spec.low_rank().dense_output();
  const auto& search = spec.search();
  if (search.base_method() != v1::METHOD_UNSPECIFIED) {
    SHEARS_ASSIGN_OR_RETURN(options.search.base_method, EngineMethod(search.base_method(), "spec.search.base_method"));
  }
  options.search.measured_configurations = search.measured_configurations();
  options.search.search_budget = search.search_budget();
  options.search.max_deviation = search.max_deviation();
  options.search.score_windows = search.score_windows();
  return options;
}

absl::StatusOr<Method> EngineMethod(v1::Method method, const std::string& field) {
  for (const auto& [engine_method, proto] : kMethods) {
    if (proto == method) return engine_method;
  }
  if (method == v1::METHOD_UNSPECIFIED || !v1::Method_IsValid(method)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": is required (e.g. METHOD_MAGNITUDE)"));
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", v1::Method_Name(method), " is not supported yet"));
}

v1::Method ToProto(engine::Method method) {
  for (const auto& [engine_method, proto] : kMethods) {
    if (engine_method == method) return proto;
  }
  return v1::METHOD_UNSPECIFIED;
}

v1::Structure ToProto(engine::Structure structure) {
  for (const auto& [engine_structure, proto] : kStructures) {
    if (engine_structure == structure) return proto;
  }
  return v1::STRUCTURE_UNSPECIFIED;
}

v1::LayerResult ToProto(const engine::LayerReport& layer) {
  v1::LayerResult out;
  out.set_name(layer.name);
  out.set_block(layer.block);
  out.set_parameters(layer.parameters);
  out.set_achieved_sparsity(layer.parameters == 0 ? 0.0 : double(layer.zeros) / double(layer.parameters));
  out.set_seconds(layer.seconds);
  if (layer.reconstruction_error >= 0) out.set_reconstruction_error(layer.reconstruction_error);
  return out;
}

v1::RedundancyMetrics ToProto(const engine::RedundancyReport& report, bool per_neuron) {
  v1::RedundancyMetrics out;
  out.set_model(report.model);
  for (const auto& block : report.blocks) {
    auto* b = out.add_blocks();
    b->set_block(block.block);
    b->set_block_influence(block.block_influence);
    if (block.attention_influence) b->set_attention_influence(*block.attention_influence);
    if (block.mlp_influence) b->set_mlp_influence(*block.mlp_influence);
  }
  for (const auto& ffn : report.ffns) {
    auto* f = out.add_ffns();
    f->set_block(ffn.block);
    f->set_neurons(ffn.neurons);
    f->set_mean_pairwise_cosine(ffn.mean_pairwise_cosine);
    f->set_effective_rank(ffn.effective_rank);
    ToProto(ffn.max_cosine, per_neuron, *f->mutable_max_cosine());
    ToProto(ffn.uniqueness, per_neuron, *f->mutable_uniqueness());
    ToProto(ffn.sensitivity, per_neuron, *f->mutable_sensitivity());
  }
  return out;
}

v1::JobResult ResultOf(const engine::PruneReport& report, const v1::JobSpec& spec) {
  v1::JobResult result;
  result.set_achieved_sparsity(report.achieved_sparsity());
  result.set_parameters_before(report.parameters_before);
  result.set_parameters_after(report.parameters_after);
  for (const auto& layer : report.layers) *result.add_layers() = ToProto(layer);
  for (int block : report.removed_blocks) result.add_removed_blocks(block);
  for (const auto& removed : report.removed_sublayers) {
    auto* r = result.add_removed_sublayers();
    r->set_block(removed.block);
    r->set_sublayer(removed.sublayer);
    if (removed.influence) r->set_influence(*removed.influence);
    r->set_parameters(removed.parameters);
  }
  result.set_model_parameters_before(report.model_parameters_before);
  result.set_model_parameters_after(report.model_parameters_after);
  for (const auto& redundancy : report.redundancy) *result.add_redundancy() = ToProto(redundancy, /*per_neuron=*/true);
  if (report.search) *result.mutable_search() = ToProto(*report.search, spec.search().base_method());
  if (report.owl) {
    v1::OwlResult* owl = result.mutable_owl();
    owl->set_outlier_multiple(report.owl->outlier_multiple);
    owl->set_max_deviation(report.owl->max_deviation);
    for (const auto& block : report.owl->blocks) {
      auto* b = owl->add_blocks();
      b->set_block(block.block);
      b->set_outlier_ratio(block.outlier_ratio);
      b->set_sparsity(block.sparsity);
    }
  }
  if (report.evaluation) {
    const auto& e = *report.evaluation;
    v1::Evaluation* eval = result.mutable_evaluation();
    eval->set_dataset_uri(spec.evaluation().dataset_uri());
    eval->set_seq_len(static_cast<int32_t>(e.seq_len));
    eval->set_windows(e.windows);
    eval->set_predicted_tokens(e.predicted_tokens);
    eval->set_dense_perplexity(e.dense_perplexity);
    eval->set_pruned_perplexity(e.pruned_perplexity);
    result.set_dense_perplexity(e.dense_perplexity);
    result.set_pruned_perplexity(e.pruned_perplexity);
  }
  result.set_output_uri(spec.output().uri());
  AddStageTimes(report.stages, *result.mutable_stage_times());
  return result;
}

void AddStageTimes(const std::vector<engine::StageTime>& stages,
                   google::protobuf::RepeatedPtrField<v1::StageTime>& out) {
  for (const auto& stage : stages) {
    v1::StageTime* time = out.Add();
    time->set_stage(stage.stage);
    time->set_seconds(stage.seconds);
  }
}

}  // namespace shears
