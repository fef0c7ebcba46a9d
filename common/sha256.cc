#include "common/sha256.h"

#include <openssl/evp.h>

#include <algorithm>
#include <fstream>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace shears {
namespace {

class Digest {
 public:
  Digest() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
  void Update(const char* data, size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }
  std::string Hex() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), out, &len);
    return absl::BytesToHexString(std::string(reinterpret_cast<char*>(out), len));
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

}  // namespace

struct Sha256::State {
  Digest digest;
};
Sha256::Sha256() : state_(std::make_unique<State>()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;
void Sha256::Update(const char* data, size_t size) { state_->digest.Update(data, size); }
std::string Sha256::Hex() { return state_->digest.Hex(); }

std::string Sha256Hex(const std::string& data) {
  Digest d;
  d.Update(data.data(), data.size());
  return d.Hex();
}

absl::StatusOr<std::string> Sha256File(const std::string& path, int64_t offset, int64_t length) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("open ", path));
  in.seekg(offset);
  Digest d;
  char buf[1 << 16];
  while (in && length != 0) {
    const int64_t want = length < 0 ? int64_t{sizeof buf} : std::min<int64_t>(length, sizeof buf);
    in.read(buf, static_cast<std::streamsize>(want));
    d.Update(buf, static_cast<size_t>(in.gcount()));
    if (length > 0) length -= in.gcount();
  }
  if (in.bad()) return absl::InternalError(absl::StrCat("read ", path));
  if (length > 0) return absl::InternalError(absl::StrCat("read ", path, ": ", length, " bytes short"));
  return d.Hex();
}

}  // namespace shears
