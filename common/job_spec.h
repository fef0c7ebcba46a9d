#pragma once
// What a JobSpec may ask for, checked the same way by the server (CreateJob) and by
// `shears-worker run-local`, with errors that name the offending field: its URIs and the fields
// only the proto has, here; everything else by the engine's own job rules (engine/api/job_rules.h)
// on the spec translated (job_translation.h).

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/uri_policy.h"
#include "shears/v1/job.pb.h"

namespace shears {

// Fills defaults a client may leave out (the method's default structure, the output format).
void ApplySpecDefaults(v1::JobSpec& spec);
// INVALID_ARGUMENT naming the field (e.g. "spec.target_sparsity: ...") for anything this build
// cannot run.
absl::Status ValidateSpec(const v1::JobSpec& spec);
// The URIs a job reads, by the field that names them: "model_uri", then each dataset's
// ("calibration.dataset_uri", ...).
std::vector<std::pair<std::string, std::string>> InputUris(const v1::JobSpec& spec);
// PERMISSION_DENIED naming the field when a file:// URI of the spec lies outside `roots` (the
// operator's --allow-file-root; none: every local path).
absl::Status CheckFileRoots(const v1::JobSpec& spec, const std::vector<std::string>& roots);
// PERMISSION_DENIED naming the first field whose URI the tenant's policy does not allow.
absl::Status CheckUriPolicy(const v1::JobSpec& spec, const TenantUriPolicy& policy);

}  // namespace shears
