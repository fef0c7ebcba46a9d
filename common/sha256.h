#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace shears {

// Lower-case hex digests.
std::string Sha256Hex(const std::string& data);
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace shears
