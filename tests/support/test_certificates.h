#pragma once
// A throw-away certificate authority for the TLS tests, made with the openssl command line (Debian's
// openssl package) at test time, so that no key is committed and nothing expires in the repository.

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "tests/support/process.h"

namespace shears::testing {

struct TestCertificates {
  std::string ca;           // the CA's certificate (PEM): what clients and the server trust
  std::string server_cert;  // for 127.0.0.1 and localhost, signed by the CA
  std::string server_key;
  std::string client_cert;  // subject "CN=worker-1", signed by the CA (mutual TLS)
  std::string client_key;
  std::string stranger_cert;  // subject "CN=stranger", signed by the CA but named in no identity file
  std::string stranger_key;
  std::string error;  // empty when every file was made
};

// Writes the files into `dir`. P-256 keys: quick to make, and gRPC's TLS takes them.
inline TestCertificates MakeTestCertificates(const std::string& dir) {
  TestCertificates c{dir + "/ca.pem",         dir + "/server.pem",   dir + "/server.key", dir + "/client.pem",
                     dir + "/client.key",     dir + "/stranger.pem", dir + "/stranger.key", ""};
  const std::string ca_key = dir + "/ca.key";
  const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"};
  auto run = [&](std::vector<std::string> argv) {
    if (!c.error.empty()) return;
    Output out = RunCommand(argv, dir + "/openssl.log");
    if (out.status != 0) c.error = absl::StrCat(absl::StrJoin(argv, " "), ": ", out.out);
  };
  auto with_ec = [&](std::vector<std::string> head, std::vector<std::string> tail) {
    head.insert(head.end(), ec.begin(), ec.end());
    head.insert(head.end(), tail.begin(), tail.end());
    return head;
  };
  run(with_ec({"/usr/bin/openssl", "req", "-x509"},
              {"-keyout", ca_key, "-out", c.ca, "-days", "2", "-subj", "/CN=shears-test-ca"}));
  // Leaf certificates: a request, then the CA's signature with the extensions a TLS peer checks.
  auto leaf = [&](const std::string& cert, const std::string& key, const std::string& subject,
                  const std::string& extensions) {
    const std::string csr = cert + ".csr", ext = cert + ".ext";
    if (c.error.empty() && !WriteFileAtomically(ext, extensions).ok()) c.error = "cannot write " + ext;
    run(with_ec({"/usr/bin/openssl", "req"}, {"-keyout", key, "-out", csr, "-subj", subject}));
    run({"/usr/bin/openssl", "x509", "-req", "-in", csr, "-CA", c.ca, "-CAkey", ca_key, "-CAcreateserial", "-out",
         cert, "-days", "2", "-extfile", ext});
  };
  leaf(c.server_cert, c.server_key, "/CN=localhost",
       "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  leaf(c.client_cert, c.client_key, "/CN=worker-1", "extendedKeyUsage=clientAuth\n");
  leaf(c.stranger_cert, c.stranger_key, "/CN=stranger", "extendedKeyUsage=clientAuth\n");
  return c;
}

}  // namespace shears::testing
