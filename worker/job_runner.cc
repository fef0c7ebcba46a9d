#include "worker/job_runner.h"

#include <chrono>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "common/job_spec.h"
#include "common/job_translation.h"
#include "common/proto_json.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/uri.h"
#include "worker/engine/prune_model.h"
#include "worker/storage/filesystem_factory.h"

namespace shears::worker {
namespace fs = std::filesystem;

namespace {

// Shares of the whole job's progress bar.
constexpr double kLoadShare = 0.05;
constexpr double kPruneShare = 0.85;

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

// A dataset of the spec made local, no larger than the worker allows: the engine reads its text
// whole.
absl::StatusOr<std::string> LocalizeDataset(const std::string& field, const std::string& uri, const RunContext& context) {
  SHEARS_ASSIGN_OR_RETURN(std::string path, Localize(field, uri, context));
  std::error_code ec;
  const auto bytes = static_cast<int64_t>(fs::file_size(path, ec));
  if (!ec && context.max_dataset_bytes > 0 && bytes > context.max_dataset_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(field, ": ", bytes, " bytes, more than the worker's limit of ",
                                                     context.max_dataset_bytes, " (--max-dataset-bytes)"));
  }
  return path;
}

// Publishes a file of the scratch directory, which is removed afterwards: moved where the scheme
// can. `sha256` is the digest the engine computed as it wrote the file, or empty to hash it here.
absl::StatusOr<v1::Artifact> Publish(FileSystem& fs, const std::string& local, const std::string& uri,
                                     const std::string& sha256 = "") {
  v1::Artifact artifact;
  artifact.set_uri(uri);
  artifact.set_size_bytes(static_cast<int64_t>(fs::file_size(local)));
  if (sha256.empty()) {
    SHEARS_ASSIGN_OR_RETURN(*artifact.mutable_sha256(), Sha256File(local));
  } else {
    artifact.set_sha256(sha256);
  }
  SHEARS_RETURN_IF_ERROR(fs.Move(local, uri));
  return artifact;
}

// Seconds since `start`.
double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The answer carries the summaries: the per-neuron values (megabytes at real widths) stay in the
// report file.
void KeepSummaries(v1::JobResult& result) {
  for (auto& redundancy : *result.mutable_redundancy()) {
    for (auto& ffn : *redundancy.mutable_ffns()) {
      ffn.mutable_max_cosine()->clear_values();
      ffn.mutable_uniqueness()->clear_values();
      ffn.mutable_sensitivity()->clear_values();
    }
  }
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

// The fence (RunContext::confirm_lease), if any.
absl::Status ConfirmLease(const RunContext& context, const char* before) {
  if (!context.confirm_lease) return absl::OkStatus();
  absl::Status st = context.confirm_lease();
  if (st.ok()) return st;
  return absl::AbortedError(absl::StrCat("not ", before, ": ", st.message()));
}

}  // namespace

absl::Status CheckLocalPaths(const v1::JobSpec& spec, const std::string& work_dir) {
  auto uris = InputUris(spec);
  uris.emplace_back("output.uri", spec.output().uri());
  std::error_code ec;
  const std::string work = absl::StrCat("file://", fs::weakly_canonical(work_dir, ec).string());
  std::vector<std::pair<std::string, std::string>> resolved;  // field, file:// URI with links followed
  for (const auto& [field, uri] : uris) {
    auto path = LocalPath(uri);
    if (!path.ok()) continue;  // not a local file
    resolved.emplace_back(field, absl::StrCat("file://", fs::weakly_canonical(*path, ec).string()));
    if (UrisOverlap(resolved.back().second, work)) {
      return absl::FailedPreconditionError(absl::StrCat("spec.", field, ": ", uri, " lies in the worker's work directory (",
                                                        work_dir, "), which holds its download cache and other jobs' files"));
    }
  }
  if (resolved.empty() || resolved.back().first != "output.uri") return absl::OkStatus();
  for (size_t i = 0; i + 1 < resolved.size(); ++i) {
    if (UrisOverlap(resolved.back().second, resolved[i].second)) {
      return absl::FailedPreconditionError(absl::StrCat("spec.output.uri: ", resolved.back().second, " overlaps ",
                                                        resolved[i].first, " (", resolved[i].second,
                                                        ") once symbolic links are followed"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<StorageOptions> TenantStorage(StorageOptions base, const std::optional<UriPolicy>& policy,
                                             const std::optional<TenantCredentials>& credentials,
                                             const std::string& tenant) {
  if (policy.has_value()) {
    SHEARS_ASSIGN_OR_RETURN(auto own, policy->For(tenant));
    base.policy = std::make_shared<const TenantUriPolicy>(std::move(own));
  }
  if (credentials.has_value()) {
    auto found = credentials->find(tenant);
    base.credentials = found != credentials->end() ? found->second : StorageCredentials{};
  }
  return base;
}

absl::StatusOr<v1::JobResult> RunJob(const v1::JobSpec& spec, const RunContext& context) {
  auto emit = [&](const v1::JobEvent& event) {
    if (context.on_event) context.on_event(event);
  };
  SHEARS_ASSIGN_OR_RETURN(engine::PruneOptions options, EngineOptions(spec));
  // The server checked the tenant's policy at CreateJob; the worker checks its own copy before a
  // byte moves, so a server without one (or an older one) cannot send it anywhere.
  if (context.storage.policy != nullptr) SHEARS_RETURN_IF_ERROR(CheckUriPolicy(spec, *context.storage.policy));
  SHEARS_RETURN_IF_ERROR(CheckLocalPaths(spec, context.work_dir));
  options.device = context.device;
  const auto download_start = std::chrono::steady_clock::now();

  emit(ProgressEvent("downloading", 0.0, absl::StrCat("fetching ", spec.model_uri())));
  const std::string scratch = (fs::path(context.work_dir) / "jobs" / context.job_id).string();
  SHEARS_ASSIGN_OR_RETURN(options.model_dir, Localize("model_uri", spec.model_uri(), context));
  // The scratch directory outlives a failed attempt: the next attempt on this worker resumes from
  // its per-block checkpoint, and overwrites only its own outputs.
  options.output_dir = (fs::path(scratch) / "output").string();
  options.checkpoint_dir = (fs::path(scratch) / "checkpoint").string();
  // The datasets' URIs become the local files the engine reads.
  if (options.evaluation) {
    SHEARS_ASSIGN_OR_RETURN(options.evaluation->path,
                            LocalizeDataset("evaluation.dataset_uri", spec.evaluation().dataset_uri(), context));
  }
  if (options.calibration) {
    SHEARS_ASSIGN_OR_RETURN(options.calibration->path,
                            LocalizeDataset("calibration.dataset_uri", spec.calibration().dataset_uri(), context));
  }
  if (options.fine_tune) {
    SHEARS_ASSIGN_OR_RETURN(options.fine_tune->path,
                            LocalizeDataset("fine_tune.dataset_uri", spec.fine_tune().dataset_uri(), context));
  }

  const double download_seconds = Since(download_start);

  engine::PruneObserver observer;
  observer.on_block = [&](const engine::BlockProgress& pace) {
    v1::JobEvent event = ProgressEvent("pruning", kLoadShare + kPruneShare * pace.blocks_done / pace.blocks,
                                       absl::StrCat("block ", pace.blocks_done, "/", pace.blocks));
    auto* p = event.mutable_progress();
    p->set_blocks_done(pace.blocks_done);
    p->set_blocks(pace.blocks);
    p->set_seconds_per_block(pace.seconds_per_block);
    p->set_seconds_left(pace.seconds_left);
    AddStageTimes({{"download", download_seconds}}, *p->mutable_stage_times());
    AddStageTimes(pace.stages, *p->mutable_stage_times());
    emit(event);
  };
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

  v1::JobResult result = ResultOf(*report, spec);
  const auto publish_start = std::chrono::steady_clock::now();
  if (result.has_evaluation()) {
    v1::JobEvent event;
    *event.mutable_evaluation() = result.evaluation();
    emit(event);
  }

  emit(ProgressEvent("publishing", kLoadShare + kPruneShare, absl::StrCat("writing to ", spec.output().uri())));
  SHEARS_ASSIGN_OR_RETURN(auto out_fs, FileSystemFor(spec.output().uri(), context.storage));
  // A manifest vouches for complete data: an earlier attempt's goes before any file is replaced,
  // the new one after every file is in place.
  const std::string manifest_uri = JoinUri(spec.output().uri(), kManifestFile);
  SHEARS_RETURN_IF_ERROR(ConfirmLease(context, "publishing"));
  SHEARS_RETURN_IF_ERROR(out_fs->Delete(manifest_uri));
  // The model's files first; the report, which lists them, next; the manifest last.
  for (const auto& name : report->files) {
    auto digest = report->digests.find(name);
    SHEARS_ASSIGN_OR_RETURN(*result.add_artifacts(),
                            Publish(*out_fs, (fs::path(options.output_dir) / name).string(),
                                    JoinUri(spec.output().uri(), name),
                                    digest == report->digests.end() ? "" : digest->second));
  }
  // The report's times: the download before the engine's stages, the publishing of the model's
  // files after (the report and the manifest themselves are a few kilobytes).
  google::protobuf::RepeatedPtrField<v1::StageTime> stages;
  AddStageTimes({{"download", download_seconds}}, stages);
  stages.MergeFrom(result.stage_times());
  AddStageTimes({{"publish", Since(publish_start)}}, stages);
  result.mutable_stage_times()->Swap(&stages);
  const std::string report_path = (fs::path(scratch) / kReportFile).string();
  result.set_report_uri(JoinUri(spec.output().uri(), kReportFile));
  SHEARS_RETURN_IF_ERROR(WriteFileAtomically(report_path, ToJson(result)));
  SHEARS_ASSIGN_OR_RETURN(*result.add_artifacts(), Publish(*out_fs, report_path, result.report_uri()));
  const std::string manifest_path = (fs::path(scratch) / kManifestFile).string();
  SHEARS_RETURN_IF_ERROR(WriteFileAtomically(manifest_path, Manifest(spec, context.job_id, result)));
  // The lease, renewed by this confirmation, holds for a lease TTL after it: far longer than the
  // few kilobytes of the manifest take.
  SHEARS_RETURN_IF_ERROR(ConfirmLease(context, "writing the manifest"));
  SHEARS_ASSIGN_OR_RETURN(*result.add_artifacts(), Publish(*out_fs, manifest_path, manifest_uri));
  RemoveAll(scratch).IgnoreError();
  KeepSummaries(result);
  emit(ProgressEvent("done", 1.0, "published"));
  return result;
}

}  // namespace shears::worker
