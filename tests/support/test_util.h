#pragma once
// Shared by the tests: scratch directories and where the fixtures and binaries are.

#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"

namespace shears::testing {

// A fresh directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "shears-test-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

inline std::string DataDir(const std::string& name) { return absl::StrCat(SHEARS_TEST_DATA_DIR, "/", name); }
inline std::string Binary(const std::string& relative) { return absl::StrCat(SHEARS_BINARY_DIR, "/", relative); }

}  // namespace shears::testing
