// The identity file's checks, and the small defences that need no running server.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/channel.h"
#include "common/files.h"
#include "common/printable_output.h"
#include "common/random_id.h"
#include "common/sha256.h"
#include "server/auth/access.h"
#include "server/auth/authenticator.h"
#include "server/auth/jwt_verifier.h"
#include "tests/support/test_jwt.h"
#include "tests/support/test_util.h"

namespace shears::server {
namespace {

TEST(ParseIdentities, ReadsTokensByTheirDigestAndCertificatesBySubject) {
  const std::string digest = Sha256Hex("secret");
  auto identities = ParseIdentities(R"({"tokens": [{"sha256": ")" + digest +
                                    R"(", "principal": "alice", "tenant": "team-a", "role": "client"},
      {"sha256": ")" + Sha256Hex("w") + R"(", "principal": "w", "tenant": "ignored", "role": "worker"}],
    "certificates": [{"subject": "CN=root", "principal": "root", "role": "admin"}]})");
  ASSERT_TRUE(identities.ok()) << identities.status();
  const Identity& alice = identities->by_token_sha256.at(digest);
  EXPECT_EQ(alice.principal, "alice");
  EXPECT_EQ(alice.tenant, "team-a");
  EXPECT_EQ(alice.role, Role::kClient);
  EXPECT_EQ(identities->by_token_sha256.at(Sha256Hex("w")).tenant, "") << "workers belong to no tenant";
  EXPECT_EQ(identities->by_certificate_subject.at("CN=root").role, Role::kAdmin);
}

TEST(ParseIdentities, NamesTheEntryAndFieldOfEachMistake) {
  const std::string d = Sha256Hex("x");
  const std::pair<std::string, std::string> cases[] = {
      {"[]", "not a JSON object"},
      {"{}", "no identities: give \"tokens\", \"certificates\" or \"jwt_subjects\""},
      {R"({"tokens": {}})", "tokens: not an array"},
      {R"({"tokens": [{"principal": "a", "role": "admin"}]})", "tokens[0].sha256: is required"},
      {R"({"tokens": [{"sha256": "abc", "principal": "a", "role": "admin"}]})", "tokens[0].sha256: not 64 hex digits"},
      {R"({"tokens": [{"sha256": ")" + d + R"(", "role": "admin"}]})", "tokens[0].principal: is required"},
      {R"({"tokens": [{"sha256": ")" + d + R"(", "principal": "a", "role": "root"}]})",
       "tokens[0].role: \"root\" is not client, worker or admin"},
      {R"({"tokens": [{"sha256": ")" + d + R"(", "principal": "a", "role": "client"}]})",
       "tokens[0].tenant: is required for a client"},
      {R"({"tokens": [{"sha256": ")" + d + R"(", "principal": "a", "role": "admin"},
                      {"sha256": ")" + d + R"(", "principal": "b", "role": "admin"}]})",
       "tokens[1].sha256: listed twice"},
      {R"({"certificates": [{"principal": "a", "role": "worker"}]})", "certificates[0].subject: is required"},
  };
  for (const auto& [json, message] : cases) {
    auto parsed = ParseIdentities(json);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << json;
    EXPECT_EQ(parsed.status().message(), message) << json;
  }
}

TEST(Access, TenantsAndScopes) {
  const Identity alice{"alice", "team-a", Role::kClient}, root{"root", "", Role::kAdmin};
  v1::Job job;
  job.set_tenant("team-a");
  EXPECT_TRUE(CanSee(alice, job));
  EXPECT_TRUE(CanSee(root, job));
  job.set_tenant("team-b");
  EXPECT_FALSE(CanSee(alice, job));
  EXPECT_EQ(TenantScope(root), "");
  EXPECT_EQ(TenantOf(root), "default") << "an admin's own jobs go to the default tenant";
  EXPECT_EQ(TenantScope(alice), "team-a");
}

TEST(RandomId, Is128BitsOfHex) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = RandomId();
    ASSERT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{32}"))) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

TEST(PrintableText, DropsC0C1AndDelButKeepsNewlinesTabsAndOtherUtf8) {
  EXPECT_EQ(PrintableText("a\x1b[2Jb\x07\r\x7f" "c\td\n"), "a[2Jbc\td\n");
  EXPECT_EQ(PrintableText("\xc2\x9b" "31m \xc2\xa0\xc3\xa9 \xe2\x9c\x93"), "31m \xc2\xa0\xc3\xa9 \xe2\x9c\x93");
  std::ostringstream out;
  {
    PrintableOutput filter(out);
    out << "x\x1b]0;t\x07y" << '\xc2' << std::flush << '\x9b' << "z \xc2" << '\xa9';
  }
  EXPECT_EQ(out.str(), "x]0;tyz \xc2\xa9");
}


class Jwt : public ::testing::Test {
 protected:
  void SetUp() override { WriteJwks(nlohmann::json::array({rsa_.Jwk(), ec_.Jwk()})); }
  void WriteJwks(const nlohmann::json& keys) {
    ASSERT_TRUE(WriteFileAtomically(dir_ / "jwks.json", nlohmann::json{{"keys", keys}}.dump()).ok());
  }
  std::unique_ptr<JwtVerifier> Verifier() {
    JwtOptions options;
    options.jwks_file = dir_ / "jwks.json";
    options.issuer = "https://kubernetes.default.svc";
    options.audience = "shears";
    options.clock = [this] { return now_; };
    auto verifier = JwtVerifier::Open(options);
    EXPECT_TRUE(verifier.ok()) << verifier.status();
    return verifier.ok() ? std::move(*verifier) : nullptr;
  }
  nlohmann::json Claims() const {
    const int64_t now = absl::ToUnixSeconds(now_);
    return {{"iss", "https://kubernetes.default.svc"}, {"aud", {"shears", "other"}},
            {"sub", "system:serviceaccount:shears:shears-worker"}, {"iat", now}, {"nbf", now}, {"exp", now + 3600}};
  }

  shears::testing::TempDir dir_;
  shears::testing::TestSigningKey rsa_{"RS256", "rsa-1"}, ec_{"ES256", "ec-1"};
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

TEST_F(Jwt, RS256AndES256TokensOfTheIssuerAndAudienceNameTheirSubject) {
  auto verifier = Verifier();
  ASSERT_NE(verifier, nullptr);
  for (const auto* key : {&rsa_, &ec_}) {
    auto subject = verifier->Verify(key->Sign(Claims()));
    ASSERT_TRUE(subject.ok()) << subject.status();
    EXPECT_EQ(*subject, "system:serviceaccount:shears:shears-worker");
  }
  nlohmann::json single = Claims();
  single["aud"] = "shears";
  EXPECT_TRUE(verifier->Verify(rsa_.Sign(single)).ok()) << "aud as one string";
  now_ += absl::Seconds(3600 + 20);
  EXPECT_TRUE(verifier->Verify(rsa_.Sign(Claims())).ok()) << "within the 30 s leeway";
}

TEST_F(Jwt, EveryWayATokenCanBeWrongIsRefusedSayingWhich) {
  auto verifier = Verifier();
  ASSERT_NE(verifier, nullptr);
  const auto refused = [&](const std::string& token) {
    auto subject = verifier->Verify(token);
    EXPECT_EQ(subject.status().code(), absl::StatusCode::kUnauthenticated);
    return std::string(subject.status().message());
  };
  const std::string good = rsa_.Sign(Claims());
  nlohmann::json c = Claims();
  c["exp"] = absl::ToUnixSeconds(now_) - 31;
  EXPECT_EQ(refused(rsa_.Sign(c)), "JWT: expired");
  c = Claims();
  c.erase("exp");
  EXPECT_EQ(refused(rsa_.Sign(c)), "JWT: no exp");
  c = Claims();
  c["nbf"] = absl::ToUnixSeconds(now_) + 60;
  EXPECT_EQ(refused(rsa_.Sign(c)), "JWT: not valid yet (nbf)");
  c = Claims();
  c["iss"] = "https://evil.example";
  EXPECT_EQ(refused(rsa_.Sign(c)), "JWT: issuer \"https://evil.example\" is not https://kubernetes.default.svc");
  c = Claims();
  c["aud"] = "vault";
  EXPECT_EQ(refused(rsa_.Sign(c)), "JWT: audience is not shears");
  c = Claims();
  c["iss"] = 42;  // a claim of the wrong type is a refusal, not an exception
  EXPECT_EQ(refused(rsa_.Sign(c)), "JWT: issuer \"\" is not https://kubernetes.default.svc");
  c = Claims();
  c.erase("sub");
  EXPECT_EQ(refused(rsa_.Sign(c)), "JWT: no sub");
  // The key decides the algorithm: none, or HMAC keyed with the public key, are refused.
  EXPECT_EQ(refused(rsa_.Sign(Claims(), {{"alg", "HS256"}})), "JWT: alg HS256 where the key is RS256");
  const std::string unsigned_token = absl::StrCat(shears::testing::TestSigningKey::Url(R"({"alg":"none","kid":"rsa-1"})"),
                                                  ".", shears::testing::TestSigningKey::Url(Claims().dump()), ".");
  EXPECT_EQ(refused(unsigned_token), "JWT: alg none where the key is RS256");
  EXPECT_EQ(refused(rsa_.Sign(Claims(), {{"kid", "rsa-2"}})), "JWT: no key \"rsa-2\" in the JWKS");
  // Another key under this key's id; a payload changed after signing.
  shears::testing::TestSigningKey stranger("RS256", "rsa-1");
  EXPECT_EQ(refused(stranger.Sign(Claims())), "JWT: the signature does not check");
  const size_t dot = good.find('.'), last = good.rfind('.');
  nlohmann::json forged = Claims();
  forged["sub"] = "system:serviceaccount:kube-system:admin";
  EXPECT_EQ(refused(absl::StrCat(good.substr(0, dot), ".", shears::testing::TestSigningKey::Url(forged.dump()),
                                 good.substr(last))),
            "JWT: the signature does not check");
  EXPECT_EQ(refused("a.b"), "JWT: not three base64url parts");
  EXPECT_EQ(refused("###.###.###"), "JWT: not base64url");
}

TEST_F(Jwt, AReloadTakesRotatedKeys) {
  auto verifier = Verifier();
  ASSERT_NE(verifier, nullptr);
  shears::testing::TestSigningKey next("RS256", "rsa-2");
  EXPECT_FALSE(verifier->Verify(next.Sign(Claims())).ok());
  WriteJwks(nlohmann::json::array({next.Jwk()}));
  ASSERT_TRUE(verifier->Reload().ok());
  EXPECT_TRUE(verifier->Verify(next.Sign(Claims())).ok());
  EXPECT_FALSE(verifier->Verify(rsa_.Sign(Claims())).ok()) << "the retired key signs nothing any more";
  ASSERT_TRUE(WriteFileAtomically(dir_ / "jwks.json", "{\"keys\": [{\"kty\": \"RSA\"}]}").ok());
  auto broken = verifier->Reload();
  EXPECT_EQ(broken.message(), absl::StrCat("--jwt-jwks ", dir_ / "jwks.json", ": keys[0]: an RSA key needs base64url n and e"));
  EXPECT_TRUE(verifier->Verify(next.Sign(Claims())).ok()) << "a broken file keeps the keys in force";
}

TEST(BearerToken, AFileIsReadAgainWhenItChanges) {
  shears::testing::TempDir dir;
  const std::string path = dir / "token";
  ASSERT_TRUE(WriteFileAtomically(path, "first-token\n").ok());
  auto token = BearerToken::FromFile(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->Get(), "first-token");
  ASSERT_TRUE(WriteFileAtomically(path, "second-token").ok());
  std::filesystem::last_write_time(path, std::filesystem::last_write_time(path) + std::chrono::seconds(5));
  EXPECT_EQ(token->Get(), "second-token");
  std::filesystem::remove(path);
  EXPECT_EQ(token->Get(), "second-token") << "a file gone for a moment keeps the last token";
  EXPECT_EQ(BearerToken::FromFile(dir / "absent").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BearerToken("fixed").Get(), "fixed");
  EXPECT_EQ(BearerToken().Get(), "");
}

}  // namespace
}  // namespace shears::server
