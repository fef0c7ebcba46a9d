#pragma once
// Process-wide LibTorch settings, kept behind a torch-free header so the worker's own code does not
// compile LibTorch's headers.

#include <string>

#include "absl/status/status.h"

namespace shears::engine {

// Sets LibTorch's intra-op threads (OpenMP would otherwise pick one here) and checks that `device`
// ("cpu", "cuda", "cuda:N") exists in this build and on this machine.
absl::Status ConfigureRuntime(int threads, const std::string& device);
// "cuda:0" when this LibTorch build sees a GPU, otherwise "cpu".
std::string DefaultDevice();

}  // namespace shears::engine
