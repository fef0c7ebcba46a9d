#include "worker/storage/filesystem.h"

#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace shears::worker {

std::string StorageCredentials::Fingerprint() const {
  // A digest of the secrets, never the secrets: the cache's keys are hashed again, but the
  // fingerprint is what this function promises.
  return Sha256Hex(absl::StrCat(aws_access_key_id, "\n", aws_secret_access_key, "\n", aws_session_token, "\n",
                                aws_endpoint_url, "\n", hf_token))
      .substr(0, 16);
}

std::string JoinUri(const std::string& base, const std::string& name) {
  if (!base.empty() && base.back() == '/') return base + name;
  return absl::StrCat(base, "/", name);
}

}  // namespace shears::worker
