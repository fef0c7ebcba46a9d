#include "worker/job_runner.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "common/proto_json.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "worker/engine/prune_model.h"
#include "worker/storage/filesystem.h"

namespace shears::worker {
namespace fs = std::filesystem;

namespace {

// Shares of the whole job's progress bar.
constexpr double kLoadShare = 0.05;
constexpr double kPruneShare = 0.85;

absl::StatusOr<engine::Method> MethodOf(v1::Method method, const std::string& field) {
  switch (method) {
    case v1::METHOD_MAGNITUDE:
      return engine::Method::kMagnitude;
    case v1::METHOD_RANDOM:
      return engine::Method::kRandom;
    case v1::METHOD_WANDA:
      return engine::Method::kWanda;
    case v1::METHOD_SPARSEGPT:
      return engine::Method::kSparseGpt;
    case v1::METHOD_SPARSELLM:
      return engine::Method::kSparseLlm;
    case v1::METHOD_BLOCK_INFLUENCE:
      return engine::Method::kBlockInfluence;
    case v1::METHOD_LAST_BLOCKS:
      return engine::Method::kLastBlocks;
    case v1::METHOD_MOVEMENT:
      return engine::Method::kMovement;
    case v1::METHOD_GUM:
      return engine::Method::kGum;
    case v1::METHOD_LOW_RANK:
      return engine::Method::kLowRank;
    case v1::METHOD_PREDICTOR_SEARCH:
      return engine::Method::kPredictorSearch;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", v1::Method_Name(method), " is not supported by this worker"));
  }
}

absl::StatusOr<engine::PruneOptions> EngineOptions(const v1::JobSpec& spec) {
  engine::PruneOptions options;
  SHEARS_ASSIGN_OR_RETURN(options.method, MethodOf(spec.method(), "spec.method"));
  if (spec.has_search()) {
    const auto& search = spec.search();
    SHEARS_ASSIGN_OR_RETURN(options.search.base_method, MethodOf(search.base_method(), "spec.search.base_method"));
    options.search.measured_configurations = search.measured_configurations();
    options.search.search_budget = search.search_budget();
    options.search.max_deviation = search.max_deviation();
    options.search.score_windows = search.score_windows();
  }
  switch (spec.structure()) {
    case v1::STRUCTURE_UNSTRUCTURED:
      options.structure = engine::Structure::kUnstructured;
      break;
    case v1::STRUCTURE_N_M:
      options.structure = engine::Structure::kNM;
      options.n = spec.n_m().n();
      options.m = spec.n_m().m();
      break;
    case v1::STRUCTURE_LAYERS:
      options.structure = engine::Structure::kLayers;
      break;
    case v1::STRUCTURE_FFN_NEURONS:
      options.structure = engine::Structure::kFfnNeurons;
      break;
    case v1::STRUCTURE_RANK:
      options.structure = engine::Structure::kRank;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("spec.structure: ", v1::Structure_Name(spec.structure()),
                                                     " is not supported by this worker"));
  }
  switch (spec.output().format()) {
    case v1::OUTPUT_FORMAT_SPARSE_BITMASK:
      options.format = engine::OutputFormat::kSparseBitmask;
      break;
    case v1::OUTPUT_FORMAT_SPARSE_24_BITMASK:
      options.format = engine::OutputFormat::kSparse24Bitmask;
      break;
    default:
      options.format = engine::OutputFormat::kDenseSafetensors;
  }
  options.allocation =
      spec.allocation() == v1::ALLOCATION_GLOBAL ? engine::Allocation::kGlobal : engine::Allocation::kUniform;
  options.target_sparsity = spec.target_sparsity();
  options.sparsellm = {spec.sparsellm().iterations(), spec.sparsellm().alpha(), spec.sparsellm().beta(),
                       spec.sparsellm().gamma()};
  options.low_rank = {spec.low_rank().algorithm() == v1::LOW_RANK_FLOP ? engine::LowRankAlgorithm::kFlop
                                                                      : engine::LowRankAlgorithm::kSvd,
                      spec.low_rank().dense_output()};
  options.seed = spec.seed();
  return options;
}

void ToProto(const engine::NeuronMeasure& measure, bool per_neuron, v1::NeuronMeasure& out) {
  out.set_mean(measure.mean);
  out.set_p50(measure.p50);
  out.set_p90(measure.p90);
  out.set_max(measure.max);
  if (per_neuron) *out.mutable_values() = {measure.values.begin(), measure.values.end()};
}

// `per_neuron` adds the per-neuron vectors, which the result keeps and events leave out.
v1::RedundancyMetrics ToProto(const engine::RedundancyReport& report, bool per_neuron) {
  v1::RedundancyMetrics out;
  out.set_model(report.model);
  for (const auto& block : report.blocks) {
    auto* b = out.add_blocks();
    b->set_block(block.block);
    b->set_block_influence(block.block_influence);
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

v1::SearchResult ToProto(const engine::SearchReport& search, v1::Method base_method) {
  v1::SearchResult out;
  out.set_base_method(base_method);
  out.set_measured_configurations(search.measured_configurations);
  out.set_training_configurations(search.training_configurations);
  out.set_validation_rank_correlation(search.validation_rank_correlation);
  out.set_searched_configurations(search.searched_configurations);
  out.set_uniform_score(search.uniform_score);
  out.set_searched_score(search.searched_score);
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

v1::JobEvent ProgressEvent(const std::string& stage, double fraction, const std::string& message) {
  v1::JobEvent event;
  auto* p = event.mutable_progress();
  p->set_stage(stage);
  p->set_fraction(fraction);
  p->set_message(message);
  return event;
}

// A URI of the spec made local (fetched into the cache when remote), with download progress as
// "loading" events; errors name the spec field.
absl::StatusOr<std::string> Localize(const std::string& field, const std::string& uri, const RunContext& context) {
  SHEARS_ASSIGN_OR_RETURN(auto storage, FileSystemFor(uri, context.storage));
  const ProgressFn progress = [&](const TransferProgress& p) {
    if (!context.on_event) return;
    constexpr double kMiB = 1 << 20;
    context.on_event(ProgressEvent(
        "downloading", 0.0,
        absl::StrCat(p.name, ": ", absl::StrFormat("%.1f", p.bytes / kMiB),
                     p.total > 0 ? absl::StrFormat(" of %.1f", p.total / kMiB) : "", " MiB",
                     p.bytes_per_second > 0 ? absl::StrFormat(" at %.1f MiB/s", p.bytes_per_second / kMiB) : "")));
  };
  auto path = storage->Localize(uri, progress);
  if (!path.ok()) return absl::Status(path.status().code(), absl::StrCat(field, ": ", path.status().message()));
  return *path;
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

absl::StatusOr<v1::Artifact> Publish(FileSystem& fs, const std::string& local, const std::string& uri) {
  v1::Artifact artifact;
  artifact.set_uri(uri);
  artifact.set_size_bytes(static_cast<int64_t>(fs::file_size(local)));
  SHEARS_ASSIGN_OR_RETURN(*artifact.mutable_sha256(), Sha256File(local));
  SHEARS_RETURN_IF_ERROR(fs.Put(local, uri));
  return artifact;
}

// manifest.json: every file published before it, with size and sha256, and what made them.
std::string Manifest(const v1::JobSpec& spec, const std::string& job_id, const v1::JobResult& result) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& a : result.artifacts()) {
    files.push_back({{"name", a.uri().substr(a.uri().rfind('/') + 1)}, {"size_bytes", a.size_bytes()},
                     {"sha256", a.sha256()}});
  }
  return nlohmann::json{{"job_id", job_id},
                        {"engine_version", SHEARS_VERSION},
                        {"spec", nlohmann::json::parse(ToJson(spec))},
                        {"files", files}}
      .dump(2);
}

}  // namespace

absl::StatusOr<v1::JobResult> RunJob(const v1::JobSpec& spec, const RunContext& context) {
  auto emit = [&](const v1::JobEvent& event) {
    if (context.on_event) context.on_event(event);
  };
  SHEARS_ASSIGN_OR_RETURN(engine::PruneOptions options, EngineOptions(spec));
  options.device = context.device;

  emit(ProgressEvent("downloading", 0.0, absl::StrCat("fetching ", spec.model_uri())));
  const std::string scratch = (fs::path(context.work_dir) / "jobs" / context.job_id).string();
  SHEARS_ASSIGN_OR_RETURN(options.model_dir, Localize("model_uri", spec.model_uri(), context));
  // The scratch directory outlives a failed attempt: the next attempt on this worker resumes from
  // its per-block checkpoint, and overwrites only its own outputs.
  options.output_dir = (fs::path(scratch) / "output").string();
  options.checkpoint_dir = (fs::path(scratch) / "checkpoint").string();
  if (spec.has_evaluation()) {
    const auto& eval = spec.evaluation();
    SHEARS_ASSIGN_OR_RETURN(std::string path,
                            Localize("evaluation.dataset_uri", eval.dataset_uri(), context));
    options.evaluation = engine::EvaluationOptions{path, eval.seq_len(), eval.max_tokens()};
  }
  if (spec.has_calibration()) {
    const auto& calib = spec.calibration();
    SHEARS_ASSIGN_OR_RETURN(std::string path,
                            Localize("calibration.dataset_uri", calib.dataset_uri(), context));
    options.calibration = engine::CalibrationOptions{path, calib.num_samples(), calib.seq_len(), calib.seed()};
  }
  if (spec.has_fine_tune()) {
    const auto& tune = spec.fine_tune();
    SHEARS_ASSIGN_OR_RETURN(std::string path,
                            Localize("fine_tune.dataset_uri", tune.dataset_uri(), context));
    options.fine_tune = engine::FineTuneOptions{path,          tune.steps(),    tune.learning_rate(),
                                                tune.batch_size(), tune.seq_len(), tune.distill(),
                                                tune.has_uniqueness_weight() ? tune.uniqueness_weight() : -1.0};
  }

  engine::PruneObserver observer;
  observer.on_progress = [&](const std::string& stage, double fraction, const std::string& message) {
    emit(ProgressEvent(stage, kLoadShare + kPruneShare * fraction, message));
  };
  observer.on_layer = [&](const engine::LayerReport& layer) {
    v1::JobEvent event;
    *event.mutable_layer() = ToProto(layer);
    emit(event);
  };
  observer.on_redundancy = [&](const engine::RedundancyReport& redundancy) {
    v1::JobEvent event;
    *event.mutable_redundancy() = ToProto(redundancy, /*per_neuron=*/false);
    emit(event);
  };
  observer.cancelled = context.cancelled;
  auto report = engine::PruneModel(options, observer);
  if (!report.ok()) {
    // A stopped attempt may be resumed; one that failed would fail again.
    if (!absl::IsCancelled(report.status())) RemoveAll(scratch).IgnoreError();
    return report.status();
  }

  v1::JobResult result;
  result.set_achieved_sparsity(report->achieved_sparsity());
  result.set_parameters_before(report->parameters_before);
  result.set_parameters_after(report->parameters_after);
  for (const auto& layer : report->layers) *result.add_layers() = ToProto(layer);
  for (int block : report->removed_blocks) result.add_removed_blocks(block);
  result.set_model_parameters_before(report->model_parameters_before);
  result.set_model_parameters_after(report->model_parameters_after);
  for (const auto& redundancy : report->redundancy) *result.add_redundancy() = ToProto(redundancy, /*per_neuron=*/true);
  if (report->search) *result.mutable_search() = ToProto(*report->search, spec.search().base_method());
  if (report->evaluation) {
    const auto& e = *report->evaluation;
    v1::Evaluation* eval = result.mutable_evaluation();
    eval->set_dataset_uri(spec.evaluation().dataset_uri());
    eval->set_seq_len(static_cast<int32_t>(e.seq_len));
    eval->set_windows(e.windows);
    eval->set_predicted_tokens(e.predicted_tokens);
    eval->set_dense_perplexity(e.dense_perplexity);
    eval->set_pruned_perplexity(e.pruned_perplexity);
    result.set_dense_perplexity(e.dense_perplexity);
    result.set_pruned_perplexity(e.pruned_perplexity);
    v1::JobEvent event;
    *event.mutable_evaluation() = *eval;
    emit(event);
  }
  result.set_output_uri(spec.output().uri());

  emit(ProgressEvent("publishing", kLoadShare + kPruneShare, absl::StrCat("writing to ", spec.output().uri())));
  SHEARS_ASSIGN_OR_RETURN(auto out_fs, FileSystemFor(spec.output().uri(), context.storage));
  // A manifest vouches for complete data: an earlier attempt's goes before any file is replaced,
  // the new one after every file is in place.
  const std::string manifest_uri = JoinUri(spec.output().uri(), kManifestFile);
  SHEARS_RETURN_IF_ERROR(out_fs->Delete(manifest_uri));
  // The model's files first; the report, which lists them, next; the manifest last.
  for (const auto& name : report->files) {
    SHEARS_ASSIGN_OR_RETURN(*result.add_artifacts(),
                            Publish(*out_fs, (fs::path(options.output_dir) / name).string(),
                                    JoinUri(spec.output().uri(), name)));
  }
  const std::string report_path = (fs::path(scratch) / kReportFile).string();
  SHEARS_RETURN_IF_ERROR(WriteFileAtomically(report_path, ToJson(result)));
  SHEARS_ASSIGN_OR_RETURN(*result.add_artifacts(),
                          Publish(*out_fs, report_path, JoinUri(spec.output().uri(), kReportFile)));
  const std::string manifest_path = (fs::path(scratch) / kManifestFile).string();
  SHEARS_RETURN_IF_ERROR(WriteFileAtomically(manifest_path, Manifest(spec, context.job_id, result)));
  SHEARS_ASSIGN_OR_RETURN(*result.add_artifacts(), Publish(*out_fs, manifest_path, manifest_uri));
  RemoveAll(scratch).IgnoreError();
  emit(ProgressEvent("done", 1.0, "published"));
  return result;
}

}  // namespace shears::worker
