#include "common/channel.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace shears {

absl::StatusOr<ChannelOptions> ChannelFlags(const CommandLine& cl, std::string target, int max_message_bytes) {
  ChannelOptions options;
  options.target = std::move(target);
  options.max_message_bytes = max_message_bytes;
  options.tls_ca_file = cl.GetOr("tls-ca", "");
  options.tls_cert_file = cl.GetOr("tls-cert", "");
  options.tls_key_file = cl.GetOr("tls-key", "");
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key: give both or neither");
  }
  if (!options.tls_cert_file.empty() && options.tls_ca_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert: needs --tls-ca, the CA of the server's certificate");
  }
  if (auto token = cl.Get("token")) {
    options.token = *token;
  } else if (auto file = cl.Get("token-file")) {
    auto text = ReadFile(*file);
    if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("--token-file ", *file, ": ", text.status().message()));
    options.token = std::string(absl::StripAsciiWhitespace(*text));
    if (options.token.empty()) return absl::InvalidArgumentError(absl::StrCat("--token-file ", *file, ": empty"));
  } else if (const char* env = std::getenv("SHEARS_TOKEN"); env != nullptr) {
    options.token = env;
  }
  return options;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  if (options.tls_ca_file.empty()) {
    return grpc::CreateCustomChannel(options.target, grpc::InsecureChannelCredentials(), args);
  }
  grpc::SslCredentialsOptions ssl;
  for (const auto& [flag, path, into] : {std::tuple{"--tls-ca", &options.tls_ca_file, &ssl.pem_root_certs},
                                         std::tuple{"--tls-cert", &options.tls_cert_file, &ssl.pem_cert_chain},
                                         std::tuple{"--tls-key", &options.tls_key_file, &ssl.pem_private_key}}) {
    if (path->empty()) continue;
    auto pem = ReadFile(*path);
    if (!pem.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, " ", *path, ": ", pem.status().message()));
    *into = std::move(*pem);
  }
  return grpc::CreateCustomChannel(options.target, grpc::SslCredentials(ssl), args);
}

void AddToken(grpc::ClientContext& context, const std::string& token) {
  if (!token.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

}  // namespace shears
