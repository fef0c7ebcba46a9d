#include "server/auth/jwt_verifier.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <optional>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"

namespace shears::server {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using Bignum = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using ParamBuilder = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>>;
using Params = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM, OSSL_PARAM_free>>;
using KeyContext = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using DigestContext = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using Signature = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG, ECDSA_SIG_free>>;

// A string member of `object`, or "" when it is absent or not a string (json::value would throw).
std::string Text(const nlohmann::json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

std::optional<std::string> Base64Url(absl::string_view text) {
  std::string out;
  if (!absl::WebSafeBase64Unescape(text, &out)) return std::nullopt;
  return out;
}

Bignum ToBignum(const std::string& bytes) {
  return Bignum(BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()), nullptr));
}

// A public key from its parameters, as OpenSSL 3 builds them.
absl::StatusOr<EVP_PKEY*> FromParams(const char* type, OSSL_PARAM_BLD* builder) {
  Params params(OSSL_PARAM_BLD_to_param(builder));
  KeyContext context(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (params == nullptr || context == nullptr || EVP_PKEY_fromdata_init(context.get()) != 1 ||
      EVP_PKEY_fromdata(context.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return absl::InvalidArgumentError("not a valid public key");
  }
  return key;
}

}  // namespace

struct JwtVerifier::Key {
  std::string alg;  // "RS256" or "ES256"
  EVP_PKEY* key = nullptr;
  ~Key() { EVP_PKEY_free(key); }
};

namespace {

// One JWK as a key; errors say which field is wrong.
absl::StatusOr<std::shared_ptr<const JwtVerifier::Key>> ParseJwk(const nlohmann::json& jwk) {
  const auto field = [&](const char* name) -> std::optional<std::string> {
    if (!jwk.contains(name) || !jwk[name].is_string()) return std::nullopt;
    return Base64Url(jwk[name].get<std::string>());
  };
  auto key = std::make_shared<JwtVerifier::Key>();
  ParamBuilder builder(OSSL_PARAM_BLD_new());
  absl::StatusOr<EVP_PKEY*> made = absl::InvalidArgumentError("kty: RSA or EC");
  const std::string kty = Text(jwk, "kty");
  if (kty == "RSA") {
    auto n = field("n"), e = field("e");
    if (!n || !e) return absl::InvalidArgumentError("an RSA key needs base64url n and e");
    Bignum bn_n = ToBignum(*n), bn_e = ToBignum(*e);
    OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get());
    OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get());
    made = FromParams("RSA", builder.get());
    key->alg = "RS256";
  } else if (kty == "EC") {
    auto x = field("x"), y = field("y");
    if (Text(jwk, "crv") != "P-256" || !x || !y || x->size() != 32 || y->size() != 32) {
      return absl::InvalidArgumentError("an EC key needs crv P-256 and 32-byte x and y");
    }
    const std::string point = absl::StrCat("\x04", *x, *y);  // uncompressed
    OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
    made = FromParams("EC", builder.get());
    key->alg = "ES256";
  }
  if (!made.ok()) return made.status();
  key->key = *made;
  if (jwk.contains("alg") && jwk["alg"] != key->alg) {
    return absl::InvalidArgumentError(absl::StrCat("alg ", jwk["alg"].dump(), " does not fit a ", kty, " key here"));
  }
  return std::shared_ptr<const JwtVerifier::Key>(std::move(key));
}

// Whether `signature` over `data` checks with `key`. ES256 signatures are r || s, which OpenSSL
// wants as DER.
bool SignatureChecks(const JwtVerifier::Key& key, absl::string_view data, std::string signature) {
  if (key.alg == "ES256") {
    if (signature.size() != 64) return false;
    Signature sig(ECDSA_SIG_new());
    Bignum r = ToBignum(signature.substr(0, 32)), s = ToBignum(signature.substr(32));
    if (sig == nullptr || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return false;
    r.release();  // owned by sig now
    s.release();
    unsigned char* der = nullptr;
    const int size = i2d_ECDSA_SIG(sig.get(), &der);
    if (size <= 0) return false;
    signature.assign(reinterpret_cast<char*>(der), static_cast<size_t>(size));
    OPENSSL_free(der);
  }
  DigestContext context(EVP_MD_CTX_new());
  return context != nullptr && EVP_DigestVerifyInit(context.get(), nullptr, EVP_sha256(), nullptr, key.key) == 1 &&
         EVP_DigestVerify(context.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

absl::Status Refused(absl::string_view why) { return absl::UnauthenticatedError(absl::StrCat("JWT: ", why)); }

}  // namespace

bool LooksLikeJwt(absl::string_view token) {
  const std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  return parts.size() == 3 && !parts[0].empty() && !parts[1].empty();
}

absl::StatusOr<std::unique_ptr<JwtVerifier>> JwtVerifier::Open(JwtOptions options) {
  if (options.jwks_file.empty() || options.issuer.empty() || options.audience.empty()) {
    return absl::InvalidArgumentError("--jwt-jwks, --jwt-issuer and --jwt-audience: give all three");
  }
  std::unique_ptr<JwtVerifier> verifier(new JwtVerifier(std::move(options)));
  if (absl::Status st = verifier->Reload(); !st.ok()) return st;
  return verifier;
}

JwtVerifier::~JwtVerifier() = default;

absl::Status JwtVerifier::Reload() {
  const std::string where = absl::StrCat("--jwt-jwks ", options_.jwks_file);
  auto text = ReadFile(options_.jwks_file);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", text.status().message()));
  const auto json = nlohmann::json::parse(*text, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("keys") || !json["keys"].is_array() ||
      json["keys"].empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected {\"keys\": [JWK, ...]}"));
  }
  auto keys = std::make_shared<std::map<std::string, std::shared_ptr<const Key>>>();
  for (size_t i = 0; i < json["keys"].size(); ++i) {
    const auto& jwk = json["keys"][i];
    if (!jwk.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": keys[", i, "]: not an object"));
    if (jwk.contains("use") && Text(jwk, "use") != "sig") continue;  // an encryption key signs nothing
    auto key = ParseJwk(jwk);
    if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": keys[", i, "]: ", key.status().message()));
    (*keys)[Text(jwk, "kid")] = *key;
  }
  absl::MutexLock lock(&mu_);
  keys_ = std::move(keys);
  return absl::OkStatus();
}

absl::StatusOr<std::string> JwtVerifier::Verify(absl::string_view token) const {
  const std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) return Refused("not three base64url parts");
  const auto header_text = Base64Url(parts[0]), claims_text = Base64Url(parts[1]);
  const auto signature = Base64Url(parts[2]);
  if (!header_text || !claims_text || !signature) return Refused("not base64url");
  const auto header = nlohmann::json::parse(*header_text, nullptr, false);
  const auto claims = nlohmann::json::parse(*claims_text, nullptr, false);
  if (!header.is_object() || !claims.is_object()) return Refused("header or claims are not JSON objects");

  std::shared_ptr<const std::map<std::string, std::shared_ptr<const Key>>> keys;
  {
    absl::MutexLock lock(&mu_);
    keys = keys_;
  }
  const std::string kid = Text(header, "kid");
  auto found = keys->find(kid);
  if (found == keys->end() && kid.empty() && keys->size() == 1) found = keys->begin();
  if (found == keys->end()) return Refused(absl::StrCat("no key \"", kid, "\" in the JWKS"));
  const Key& key = *found->second;
  // The key decides the algorithm: a token cannot choose "none", or HMAC with the public key.
  if (Text(header, "alg") != key.alg) {
    return Refused(absl::StrCat("alg ", (Text(header, "alg").empty() ? std::string("(none)") : Text(header, "alg")), " where the key is ", key.alg));
  }
  const absl::string_view signed_part = token.substr(0, parts[0].size() + 1 + parts[1].size());
  if (!SignatureChecks(key, signed_part, *signature)) return Refused("the signature does not check");

  if (Text(claims, "iss") != options_.issuer) {
    return Refused(absl::StrCat("issuer \"", Text(claims, "iss"), "\" is not ", options_.issuer));
  }
  bool audience = false;
  if (claims.contains("aud") && claims["aud"].is_string()) audience = claims["aud"] == options_.audience;
  if (claims.contains("aud") && claims["aud"].is_array()) {
    for (const auto& a : claims["aud"]) audience |= a == options_.audience;
  }
  if (!audience) return Refused(absl::StrCat("audience is not ", options_.audience));
  const double now = absl::ToDoubleSeconds(options_.clock() - absl::UnixEpoch());
  const double leeway = absl::ToDoubleSeconds(options_.leeway);
  if (!claims.contains("exp") || !claims["exp"].is_number()) return Refused("no exp");
  if (claims["exp"].get<double>() + leeway <= now) return Refused("expired");
  if (claims.contains("nbf") && (!claims["nbf"].is_number() || claims["nbf"].get<double>() - leeway > now)) {
    return Refused("not valid yet (nbf)");
  }
  const std::string subject = Text(claims, "sub");
  if (subject.empty()) return Refused("no sub");
  return subject;
}

}  // namespace shears::server
