#pragma once
// Process-wide LibTorch settings, kept behind a torch-free header so the worker's own code does not
// compile LibTorch's headers.

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace shears::engine {

// Sets LibTorch's intra-op threads (OpenMP would otherwise pick one here) and checks that `device`
// ("cpu", "cuda", "cuda:N") exists in this build and on this machine. `max_tensor_bytes`, when
// positive, bounds the CPU memory the process's large tensors hold at once: a job that would pass
// it fails with LibTorch's out-of-memory error instead of the worker being killed
// (SetCpuTensorMemoryLimit in cpu_allocator.h says what counts).
absl::Status ConfigureRuntime(int threads, const std::string& device, int64_t max_tensor_bytes = 0);
// "cuda:0" when this LibTorch build sees a GPU, otherwise "cpu".
std::string DefaultDevice();

// The highest memory use on `device` since the last ResetPeakMemory: for CUDA what the caching
// allocator held (reserved, the figure that runs out), for the CPU the process's resident set (the
// kernel's high-water mark, VmHWM, which the reset rewinds). 0 when it cannot be read.
int64_t PeakMemoryBytes(const std::string& device);
void ResetPeakMemory(const std::string& device);

}  // namespace shears::engine
