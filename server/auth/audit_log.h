#pragma once
// One JSON line for every call that creates, cancels or completes a job: who, what, which job, and
// how it ended, refusals included. Operators ship these lines to their log store as they are.

#include <fstream>
#include <memory>
#include <ostream>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/auth/identity.h"

namespace shears::server {

class AuditLog {
 public:
  // Appends to `path`; an empty path writes to standard error.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path);

  // `who` is null when the caller could not be identified.
  void Record(const Identity* who, absl::string_view action, absl::string_view job_id, const absl::Status& outcome)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  AuditLog() = default;
  absl::Mutex mu_;
  std::ofstream file_ ABSL_GUARDED_BY(mu_);
  std::ostream* out_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace shears::server
