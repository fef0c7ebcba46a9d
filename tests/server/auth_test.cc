// The identity file's checks, and the small defences that need no running server.
#include <gtest/gtest.h>

#include <regex>

#include "common/printable_output.h"
#include "common/random_id.h"
#include "common/sha256.h"
#include "server/auth/access.h"
#include "server/auth/authenticator.h"

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
      {"{}", "no identities: give \"tokens\" or \"certificates\""},
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

}  // namespace
}  // namespace shears::server
