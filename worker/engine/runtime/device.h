#pragma once

#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace shears::engine {

// "cpu", "cuda" or "cuda:N"; CUDA only when this LibTorch build has it and the device exists.
absl::StatusOr<torch::Device> ParseDevice(const std::string& text);

}  // namespace shears::engine
