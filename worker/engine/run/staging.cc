#include "worker/engine/run/staging.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace shears::engine {

std::string StagingDir(const PruneOptions& options, const std::string& what) {
  const std::filesystem::path out = std::filesystem::path(options.output_dir).lexically_normal();
  return (out.parent_path() / absl::StrCat(".", out.filename().string(), ".", what)).string();
}

}  // namespace shears::engine
