#include "common/channel.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace shears {

struct BearerToken::State {
  std::string path;  // empty: fixed
  mutable absl::Mutex mu;
  mutable std::string token ABSL_GUARDED_BY(mu);
  mutable std::filesystem::file_time_type read_at ABSL_GUARDED_BY(mu);
};

namespace {

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("--token-file ", path, ": ", text.status().message()));
  std::string token(absl::StripAsciiWhitespace(*text));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat("--token-file ", path, ": empty"));
  return token;
}

}  // namespace

BearerToken::BearerToken(std::string token) : state_(std::make_shared<State>()) {
  absl::MutexLock lock(&state_->mu);
  state_->token = std::move(token);
}

absl::StatusOr<BearerToken> BearerToken::FromFile(std::string path) {
  BearerToken out;
  out.state_ = std::make_shared<State>();
  out.state_->path = std::move(path);
  std::error_code ec;
  const auto modified = std::filesystem::last_write_time(out.state_->path, ec);
  auto token = ReadToken(out.state_->path);
  if (!token.ok()) return token.status();
  absl::MutexLock lock(&out.state_->mu);
  out.state_->token = std::move(*token);
  out.state_->read_at = modified;
  return out;
}

std::string BearerToken::Get() const {
  if (state_ == nullptr) return "";
  absl::MutexLock lock(&state_->mu);
  if (!state_->path.empty()) {
    std::error_code ec;
    const auto modified = std::filesystem::last_write_time(state_->path, ec);
    if (!ec && modified != state_->read_at) {
      if (auto token = ReadToken(state_->path); token.ok()) {
        state_->token = std::move(*token);
        state_->read_at = modified;
      }
    }
  }
  return state_->token;
}

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
    options.token = BearerToken(*token);
  } else if (auto file = cl.Get("token-file")) {
    auto token = BearerToken::FromFile(*file);
    if (!token.ok()) return token.status();
    options.token = std::move(*token);
  } else if (const char* env = std::getenv("SHEARS_TOKEN"); env != nullptr) {
    options.token = BearerToken(env);
  }
  return options;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  // gRPC's reconnect backoff grows to two minutes by default: a worker would find a restarted server
  // only after its leases' grace had run out. (The minimum is left alone: gRPC also takes it as the
  // least time a connection attempt, TLS handshake included, may take.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  if (options.tls_ca_file.empty()) {
    return grpc::CreateCustomChannel(options.target, grpc::InsecureChannelCredentials(), args);
  }
  grpc::SslCredentialsOptions ssl;
  if (absl::Status st = ReadFlagFiles({{"--tls-ca", options.tls_ca_file, &ssl.pem_root_certs},
                                       {"--tls-cert", options.tls_cert_file, &ssl.pem_cert_chain},
                                       {"--tls-key", options.tls_key_file, &ssl.pem_private_key}});
      !st.ok()) {
    return st;
  }
  return grpc::CreateCustomChannel(options.target, grpc::SslCredentials(ssl), args);
}

void AddToken(grpc::ClientContext& context, const std::string& token) {
  if (!token.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

}  // namespace shears
