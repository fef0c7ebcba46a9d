#pragma once
// The server's --uri-policy (common/uri_policy.h says its format), re-read on SIGHUP with the
// identities. Without the flag every URI is allowed (within --allow-file-root).

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/uri_policy.h"
#include "shears/v1/job.pb.h"

namespace shears::server {

class UriPolicies {
 public:
  // `path` empty: no policy.
  static absl::StatusOr<std::unique_ptr<UriPolicies>> Open(std::string path);
  // On an error the policy in force stays.
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);
  // PERMISSION_DENIED naming the field of the first URI `tenant` may not name.
  absl::Status Check(const v1::JobSpec& spec, const std::string& tenant) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  explicit UriPolicies(std::string path) : path_(std::move(path)) {}
  const std::string path_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const UriPolicy> policy_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shears::server
