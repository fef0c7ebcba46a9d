#pragma once
// JSON Web Tokens signed by a key of a JWKS file, for an issuer and an audience: how Kubernetes
// projected service-account tokens (and most identity providers) name a caller. RS256 and ES256;
// any other "alg", "none" included, is refused. The token's "sub" is what the identity file maps
// to a principal, a tenant and a role (authenticator.h).

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace shears::server {

struct JwtOptions {
  std::string jwks_file;  // {"keys": [{"kty": "RSA", "kid", "n", "e"} | {"kty": "EC", "crv": "P-256", "x", "y"}]}
  std::string issuer;     // "iss" must equal it
  std::string audience;   // "aud" (a string or a list) must hold it
  absl::Duration leeway = absl::Seconds(30);  // clock skew allowed on "exp" and "nbf"
  std::function<absl::Time()> clock = absl::Now;
};

class JwtVerifier {
 public:
  static absl::StatusOr<std::unique_ptr<JwtVerifier>> Open(JwtOptions options);
  ~JwtVerifier();
  // Re-reads the JWKS file (keys rotate); on an error the keys in force stay.
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);
  // The subject of a token whose signature, issuer, audience and times check; UNAUTHENTICATED
  // saying which did not.
  absl::StatusOr<std::string> Verify(absl::string_view token) const ABSL_LOCKS_EXCLUDED(mu_);

  struct Key;  // an OpenSSL public key and its algorithm

 private:
  explicit JwtVerifier(JwtOptions options) : options_(std::move(options)) {}
  const JwtOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::map<std::string, std::shared_ptr<const Key>>> keys_ ABSL_GUARDED_BY(mu_);  // by kid
};

// Whether `token` has the shape of a JWT (three base64url parts), as opposed to an opaque token.
bool LooksLikeJwt(absl::string_view token);

}  // namespace shears::server
