#include "worker/storage/filesystem.h"

#include "absl/strings/str_cat.h"

namespace shears::worker {

std::string JoinUri(const std::string& base, const std::string& name) {
  if (!base.empty() && base.back() == '/') return base + name;
  return absl::StrCat(base, "/", name);
}

}  // namespace shears::worker
