#pragma once
// One attempt at a job, the same whether a server leased it or `run-local` read it from a file:
// fetch the model, prune it with the engine, publish the output and the report, and describe it
// all as JobEvents.

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/uri_policy.h"
#include "shears/v1/job.pb.h"
#include "worker/storage/filesystem.h"
#include "worker/storage/tenant_credentials.h"

namespace shears::worker {

struct RunContext {
  std::string job_id;    // names the job's scratch directory, where a retried attempt resumes
  std::string work_dir;  // scratch space
  StorageOptions storage;  // allowed file roots, the download cache
  std::string device;    // "cpu", "cuda:N"
  // The largest dataset file (calibration, evaluation, fine-tuning) the engine reads; 0: any.
  int64_t max_dataset_bytes = 0;
  // Progress and layer events, in order, from the running thread.
  std::function<void(const v1::JobEvent&)> on_event;
  // Polled between blocks; true stops the run with CANCELLED.
  std::function<bool()> cancelled;
  // The publishing fence: asked before the attempt touches the output's manifest (deleting an
  // earlier one, writing its own). An error (the lease went to another attempt) stops the attempt
  // there, so a stale attempt never writes a manifest. Unset: no fence (run-local).
  std::function<absl::Status()> confirm_lease;
};

// The job's file:// URIs as this worker resolves them (symbolic links followed): none may lie in
// `work_dir` (the download cache and the jobs' scratch, which other jobs read), and the output may
// not overlap an input. FAILED_PRECONDITION naming the field.
absl::Status CheckLocalPaths(const v1::JobSpec& spec, const std::string& work_dir);

// `base` with what a job of `tenant` may reach: its URI policy (unset: any URI; a tenant the
// policy does not name: PERMISSION_DENIED) and its storage keys (unset: the worker's environment;
// a tenant the file does not name: none).
absl::StatusOr<StorageOptions> TenantStorage(StorageOptions base, const std::optional<UriPolicy>& policy,
                                             const std::optional<TenantCredentials>& credentials,
                                             const std::string& tenant);

absl::StatusOr<v1::JobResult> RunJob(const v1::JobSpec& spec, const RunContext& context);

inline constexpr char kReportFile[] = "shears_report.json";
// Published last: a reader that sees it sees a complete output.
inline constexpr char kManifestFile[] = "manifest.json";

}  // namespace shears::worker
