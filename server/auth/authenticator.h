#pragma once
// Turns a call's credentials into an Identity.
//
// Identities come from one JSON file (--auth-token-file), re-read on SIGHUP:
//
//   {"tokens": [{"sha256": "<hex of the token>", "principal": "alice", "tenant": "team-a",
//                "role": "client"}, ...],
//    "certificates": [{"subject": "CN=worker-1,O=shears", "principal": "worker-1", "role": "worker"}],
//    "jwt_subjects": [{"subject": "system:serviceaccount:shears:shears-worker", "principal": "workers",
//                      "role": "worker"}]}
//
// A call names itself by `authorization: Bearer <token>` metadata: a token listed by its SHA-256 (so
// the file holds no secret), or, with --jwt-jwks, a JWT whose verified "sub" is listed (Kubernetes
// projected service-account tokens); or under mutual TLS by its client certificate's subject. A
// server with no identity file is "open": it serves loopback only, and every caller is an admin of
// the tenant "default" (the embedded demo).

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/auth/identity.h"
#include "server/auth/jwt_verifier.h"

namespace shears::server {

// The tenant of every job an open server creates.
inline constexpr char kDefaultTenant[] = "default";

struct Identities {
  absl::flat_hash_map<std::string, Identity> by_token_sha256;
  absl::flat_hash_map<std::string, Identity> by_certificate_subject;
  absl::flat_hash_map<std::string, Identity> by_jwt_subject;
};

// The identity file's text as Identities; errors name the entry and field.
absl::StatusOr<Identities> ParseIdentities(const std::string& json);

class Authenticator {
 public:
  static std::unique_ptr<Authenticator> Open();
  // `jwt`: JWTs are taken too, verified with it.
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromFile(std::string path,
                                                                 std::unique_ptr<JwtVerifier> jwt = nullptr);

  bool open() const { return path_.empty(); }
  // Re-reads the identity file. On an error the identities in force stay, so a typo in a reload
  // does not lock everyone out.
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);

  // UNAUTHENTICATED when the call has no credentials this server knows.
  absl::StatusOr<Identity> Authenticate(const grpc::ServerContextBase& context) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  explicit Authenticator(std::string path, std::unique_ptr<JwtVerifier> jwt = nullptr)
      : path_(std::move(path)), jwt_(std::move(jwt)) {}

  const std::string path_;  // empty: open
  const std::unique_ptr<JwtVerifier> jwt_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Identities> identities_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shears::server
