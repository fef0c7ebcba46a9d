#include "server/auth/audit_log.h"

#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace shears::server {

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  std::unique_ptr<AuditLog> log(new AuditLog());
  absl::MutexLock lock(&log->mu_);
  if (path.empty()) {
    log->out_ = &std::cerr;
  } else {
    log->file_.open(path, std::ios::app);
    if (!log->file_) return absl::InvalidArgumentError(absl::StrCat("--audit-log ", path, ": cannot open for appending"));
    log->out_ = &log->file_;
  }
  return log;
}

void AuditLog::Record(const Identity* who, absl::string_view action, absl::string_view job_id,
                      const absl::Status& outcome) {
  nlohmann::json line = {{"audit", std::string(action)},
                         {"time", absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone())},
                         {"job_id", std::string(job_id)},
                         {"outcome", outcome.ok() ? "OK" : absl::StatusCodeToString(outcome.code())}};
  if (who != nullptr) {
    line["principal"] = who->principal;
    line["tenant"] = who->tenant;
    line["role"] = std::string(RoleName(who->role));
  }
  if (!outcome.ok()) line["error"] = std::string(outcome.message());
  // dump's replace mode: a principal or message with invalid UTF-8 still makes one parseable line.
  const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  absl::MutexLock lock(&mu_);
  *out_ << text << std::endl;
}

}  // namespace shears::server
