#pragma once
// The identities the service tests run with: two teams' clients, a worker and an admin, each with a
// bearer token, and a worker named by its client certificate (test_certificates.h).

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/sha256.h"
#include "tests/support/process.h"
#include "tests/support/test_certificates.h"

namespace shears::testing {

inline constexpr char kAliceToken[] = "alice-token-7f3a";  // client of team-a
inline constexpr char kBobToken[] = "bob-token-51c9";      // client of team-b
inline constexpr char kWorkerToken[] = "worker-token-0d2e";
inline constexpr char kRootToken[] = "root-token-99b1";    // admin
inline constexpr char kCarolToken[] = "carol-token-4410";  // client of team-a, in the file only when asked

inline nlohmann::json TokenEntry(const std::string& token, const std::string& principal, const std::string& tenant,
                                 const std::string& role) {
  nlohmann::json entry = {{"sha256", Sha256Hex(token)}, {"principal", principal}, {"role", role}};
  if (!tenant.empty()) entry["tenant"] = tenant;
  return entry;
}

// The --auth-token-file contents.
inline nlohmann::json TestIdentities(bool with_carol = false) {
  nlohmann::json tokens = {TokenEntry(kAliceToken, "alice", "team-a", "client"),
                           TokenEntry(kBobToken, "bob", "team-b", "client"),
                           TokenEntry(kWorkerToken, "worker-0", "", "worker"),
                           TokenEntry(kRootToken, "root", "", "admin")};
  if (with_carol) tokens.push_back(TokenEntry(kCarolToken, "carol", "team-a", "client"));
  return {{"tokens", tokens},
          {"certificates", {{{"subject", "CN=worker-1"}, {"principal", "worker-1"}, {"role", "worker"}}}},
          {"jwt_subjects",
           {{{"subject", "system:serviceaccount:shears:shears-worker"}, {"principal", "shears-worker"}, {"role", "worker"}},
            {{"subject", "system:serviceaccount:team-a:pipeline"}, {"principal", "team-a-pipeline"}, {"tenant", "team-a"},
             {"role", "client"}}}}};
}

// A shears-server as deployed: TLS, identities, an audit log, all in `dir`.
struct SecureServer {
  TestCertificates certs;
  ServerProcess server;
  std::string identities;   // the identity file
  std::string worker_token;  // a file holding the worker's token, for --token-file
  std::string audit_log;
  std::string error;  // empty when it started
};
inline SecureServer StartSecureServer(const std::string& dir, const std::vector<std::string>& flags = {}) {
  SecureServer s;
  // A restarted server keeps its certificates: its clients trust the CA they were given.
  if (std::filesystem::exists(dir + "/server.pem")) {
    s.certs = {dir + "/ca.pem",     dir + "/server.pem",   dir + "/server.key",   dir + "/client.pem",
               dir + "/client.key", dir + "/stranger.pem", dir + "/stranger.key", ""};
  } else {
    s.certs = MakeTestCertificates(dir);
  }
  s.identities = dir + "/identities.json";
  s.worker_token = dir + "/worker.token";
  s.audit_log = dir + "/audit.log";
  if (!s.certs.error.empty()) {
    s.error = s.certs.error;
    return s;
  }
  if (!WriteFileAtomically(s.identities, TestIdentities().dump()).ok() ||
      !WriteFileAtomically(s.worker_token, std::string(kWorkerToken) + "\n").ok()) {
    s.error = "cannot write the identity files";
    return s;
  }
  std::vector<std::string> all = {"--auth-token-file", s.identities,     "--tls-cert",  s.certs.server_cert,
                                  "--tls-key",         s.certs.server_key, "--audit-log", s.audit_log};
  all.insert(all.end(), flags.begin(), flags.end());
  s.server = StartServer(dir, all);
  if (s.server.address.empty()) s.error = "shears-server did not start: " + s.server.process->Log();
  return s;
}

}  // namespace shears::testing
