#include "server/auth/authenticator.h"

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/sha256.h"

namespace shears::server {
namespace {

absl::StatusOr<Role> ParseRole(const std::string& name) {
  if (name == "client") return Role::kClient;
  if (name == "worker") return Role::kWorker;
  if (name == "admin") return Role::kAdmin;
  return absl::InvalidArgumentError(absl::StrCat("role: \"", name, "\" is not client, worker or admin"));
}

// One entry of "tokens", "certificates" or "jwt_subjects": its key (`key_field`) and the identity it
// names.
absl::StatusOr<std::pair<std::string, Identity>> ParseEntry(const nlohmann::json& entry, const char* key_field) {
  if (!entry.is_object()) return absl::InvalidArgumentError("not an object");
  const auto text = [&](const char* field) -> std::string {
    const auto it = entry.find(field);
    return it != entry.end() && it->is_string() ? it->get<std::string>() : "";
  };
  const std::string key = text(key_field);
  if (key.empty()) return absl::InvalidArgumentError(absl::StrCat(key_field, ": is required"));
  Identity identity;
  identity.principal = text("principal");
  if (identity.principal.empty()) return absl::InvalidArgumentError("principal: is required");
  auto role = ParseRole(text("role"));
  if (!role.ok()) return role.status();
  identity.role = *role;
  identity.tenant = text("tenant");
  if (identity.role == Role::kClient && identity.tenant.empty()) {
    return absl::InvalidArgumentError("tenant: is required for a client");
  }
  if (identity.role == Role::kWorker) identity.tenant.clear();
  return std::make_pair(key, std::move(identity));
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kClient:
      return "client";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

absl::StatusOr<Identities> ParseIdentities(const std::string& text) {
  const auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return absl::InvalidArgumentError("not a JSON object");
  Identities identities;
  for (const auto& [list, key_field, map] :
       {std::tuple{"tokens", "sha256", &identities.by_token_sha256},
        std::tuple{"certificates", "subject", &identities.by_certificate_subject},
        std::tuple{"jwt_subjects", "subject", &identities.by_jwt_subject}}) {
    if (!json.contains(list)) continue;
    if (!json[list].is_array()) return absl::InvalidArgumentError(absl::StrCat(list, ": not an array"));
    for (size_t i = 0; i < json[list].size(); ++i) {
      auto entry = ParseEntry(json[list][i], key_field);
      if (!entry.ok()) return absl::InvalidArgumentError(absl::StrCat(list, "[", i, "].", entry.status().message()));
      std::string key = entry->first;
      if (map == &identities.by_token_sha256) {
        key = absl::AsciiStrToLower(key);
        if (key.size() != 64 || key.find_first_not_of("0123456789abcdef") != std::string::npos) {
          return absl::InvalidArgumentError(absl::StrCat(list, "[", i, "].sha256: not 64 hex digits"));
        }
      }
      if (!map->emplace(key, std::move(entry->second)).second) {
        return absl::InvalidArgumentError(absl::StrCat(list, "[", i, "].", key_field, ": listed twice"));
      }
    }
  }
  if (identities.by_token_sha256.empty() && identities.by_certificate_subject.empty() &&
      identities.by_jwt_subject.empty()) {
    return absl::InvalidArgumentError("no identities: give \"tokens\", \"certificates\" or \"jwt_subjects\"");
  }
  return identities;
}

std::unique_ptr<Authenticator> Authenticator::Open() { return std::unique_ptr<Authenticator>(new Authenticator("")); }

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromFile(std::string path,
                                                                      std::unique_ptr<JwtVerifier> jwt) {
  if (path.empty()) return absl::InvalidArgumentError("--auth-token-file: empty path");
  std::unique_ptr<Authenticator> authenticator(new Authenticator(std::move(path), std::move(jwt)));
  if (absl::Status st = authenticator->Reload(); !st.ok()) return st;
  return authenticator;
}

absl::Status Authenticator::Reload() {
  if (open()) return absl::OkStatus();
  auto text = ReadFile(path_);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("--auth-token-file ", path_, ": ", text.status().message()));
  auto identities = ParseIdentities(*text);
  if (!identities.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--auth-token-file ", path_, ": ", identities.status().message()));
  }
  if (jwt_ != nullptr) {
    if (absl::Status st = jwt_->Reload(); !st.ok()) return st;
  }
  auto fresh = std::make_shared<const Identities>(std::move(*identities));
  absl::MutexLock lock(&mu_);
  identities_ = std::move(fresh);
  return absl::OkStatus();
}

absl::StatusOr<Identity> Authenticator::Authenticate(const grpc::ServerContextBase& context) const {
  if (open()) return Identity{"local", kDefaultTenant, Role::kAdmin};
  std::shared_ptr<const Identities> identities;
  {
    absl::MutexLock lock(&mu_);
    identities = identities_;
  }
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    const absl::string_view value(it->second.data(), it->second.size());
    constexpr absl::string_view kScheme = "bearer ";
    if (value.size() <= kScheme.size() || !absl::StartsWithIgnoreCase(value, kScheme)) {
      return absl::UnauthenticatedError("authorization: expected \"Bearer <token>\"");
    }
    const absl::string_view token = value.substr(kScheme.size());
    const auto found = identities->by_token_sha256.find(Sha256Hex(std::string(token)));
    if (found != identities->by_token_sha256.end()) return found->second;
    if (jwt_ == nullptr || !LooksLikeJwt(token)) return absl::UnauthenticatedError("authorization: unknown token");
    auto subject = jwt_->Verify(token);
    if (!subject.ok()) return absl::UnauthenticatedError(absl::StrCat("authorization: ", subject.status().message()));
    const auto named = identities->by_jwt_subject.find(*subject);
    if (named == identities->by_jwt_subject.end()) {
      return absl::UnauthenticatedError(
          absl::StrCat("authorization: JWT subject \"", *subject, "\" is not in the identity file"));
    }
    return named->second;
  }
  // Under mutual TLS the handshake has verified the certificate against --client-ca; its subject
  // names the identity.
  if (const auto auth = context.auth_context(); auth != nullptr) {
    for (const auto& subject : auth->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME)) {
      const auto found = identities->by_certificate_subject.find(std::string(subject.data(), subject.size()));
      if (found != identities->by_certificate_subject.end()) return found->second;
      return absl::UnauthenticatedError(
          absl::StrCat("client certificate subject \"", std::string(subject.data(), subject.size()),
                       "\" is not in the identity file"));
    }
  }
  return absl::UnauthenticatedError("no credentials: send \"authorization: Bearer <token>\" metadata");
}

}  // namespace shears::server
