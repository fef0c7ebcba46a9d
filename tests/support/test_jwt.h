#pragma once
// Signing keys and JWTs for the tests, made with OpenSSL's own API: an RSA or P-256 key, its JWK,
// and tokens with whatever header and claims a test wants, signed as an identity provider would.

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace shears::testing {

class TestSigningKey {
 public:
  // "RS256" (RSA 2048) or "ES256" (P-256).
  TestSigningKey(std::string alg, std::string kid) : alg_(std::move(alg)), kid_(std::move(kid)) {
    key_ = alg_ == "RS256" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})
                           : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  }
  ~TestSigningKey() { EVP_PKEY_free(key_); }
  TestSigningKey(const TestSigningKey&) = delete;
  TestSigningKey& operator=(const TestSigningKey&) = delete;

  // The public key as a JWK.
  nlohmann::json Jwk() const {
    if (alg_ == "RS256") {
      return {{"kty", "RSA"}, {"kid", kid_}, {"alg", "RS256"}, {"use", "sig"},
              {"n", Param(OSSL_PKEY_PARAM_RSA_N, 0)}, {"e", Param(OSSL_PKEY_PARAM_RSA_E, 0)}};
    }
    return {{"kty", "EC"}, {"kid", kid_}, {"crv", "P-256"},
            {"x", Param(OSSL_PKEY_PARAM_EC_PUB_X, 32)}, {"y", Param(OSSL_PKEY_PARAM_EC_PUB_Y, 32)}};
  }

  // header.claims.signature; `header` gets alg and kid unless it has them.
  std::string Sign(const nlohmann::json& claims, nlohmann::json header = nlohmann::json::object()) const {
    if (!header.contains("alg")) header["alg"] = alg_;
    if (!header.contains("kid")) header["kid"] = kid_;
    const std::string signed_part = absl::StrCat(Url(header.dump()), ".", Url(claims.dump()));
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    size_t size = 0;
    EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key_);
    EVP_DigestSign(context.get(), nullptr, &size, reinterpret_cast<const unsigned char*>(signed_part.data()),
                   signed_part.size());
    std::string signature(size, '\0');
    EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                   reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size());
    signature.resize(size);
    if (alg_ == "ES256") {  // DER to r || s, as JWS wants
      const unsigned char* der = reinterpret_cast<const unsigned char*>(signature.data());
      ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(signature.size()));
      std::string raw(64, '\0');
      BN_bn2binpad(ECDSA_SIG_get0_r(sig), reinterpret_cast<unsigned char*>(raw.data()), 32);
      BN_bn2binpad(ECDSA_SIG_get0_s(sig), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
      ECDSA_SIG_free(sig);
      signature = raw;
    }
    return absl::StrCat(signed_part, ".", Url(signature));
  }

  static std::string Url(const std::string& bytes) { return absl::WebSafeBase64Escape(bytes); }

 private:
  // A big-number parameter as base64url, left-padded to `width` bytes when given.
  std::string Param(const char* name, int width) const {
    BIGNUM* bn = nullptr;
    EVP_PKEY_get_bn_param(key_, name, &bn);
    std::string bytes(width > 0 ? width : BN_num_bytes(bn), '\0');
    BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
    BN_free(bn);
    return Url(bytes);
  }

  std::string alg_, kid_;
  EVP_PKEY* key_ = nullptr;
};

}  // namespace shears::testing
