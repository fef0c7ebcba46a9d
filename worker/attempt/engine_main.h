#pragma once
// The engine process's side of the attempt pipe (`shears-worker attempt`, started by
// RunInEngineProcess): reads the start message, runs the job with RunJob and reports back.

#include <optional>
#include <string>

#include "common/uri_policy.h"
#include "worker/storage/filesystem.h"
#include "worker/storage/tenant_credentials.h"

namespace shears::worker {

// What the worker's flags say, read again by the engine process from the same flags.
struct EngineSettings {
  std::string work_dir;
  std::string device;
  StorageOptions storage;  // before the tenant's policy and credentials
  int64_t max_dataset_bytes = int64_t{16} << 30;  // RunContext::max_dataset_bytes
  std::optional<UriPolicy> uri_policy;
  std::optional<TenantCredentials> tenant_credentials;
};

// Serves one attempt and ends the process with _exit: its status is 0 once an outcome (success or
// failure) went up the pipe, 2 when the pipe carried no start. LibTorch's static destructors are
// skipped; the job is over by then, and a crash in them would read as the job's.
[[noreturn]] void ServeAttempt(const EngineSettings& settings);

}  // namespace shears::worker
