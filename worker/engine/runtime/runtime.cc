#include "worker/engine/runtime/runtime.h"

#include <malloc.h>
#include <torch/torch.h>

#include <fstream>
#include <string>

#ifdef SHEARS_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "absl/strings/str_cat.h"
#include "worker/engine/runtime/cpu_allocator.h"
#include "worker/engine/runtime/device.h"

namespace shears::engine {

absl::Status ConfigureRuntime(int threads, const std::string& device, int64_t max_tensor_bytes) {
  if (threads < 1) return absl::InvalidArgumentError(absl::StrCat("--threads must be at least 1, got ", threads));
  if (max_tensor_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--max-tensor-memory must not be negative, got ", max_tensor_bytes));
  }
  // glibc raises its mmap threshold to the size of each large block it frees, after which
  // block-sized tensors come from the heap and fragment it: the worker's memory then grows with
  // every decoder block (measured: 280 -> 643 MiB from 4 to 32 blocks). A fixed threshold keeps
  // large tensors in their own mappings, returned to the system when freed.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // ...and those mappings, made afresh for each tensor, are the faults the block cache saves.
  InstallCpuBlockCache();
  SetCpuTensorMemoryLimit(static_cast<size_t>(max_tensor_bytes));
  torch::set_num_threads(threads);
  return ParseDevice(device).status();
}

std::string DefaultDevice() { return torch::cuda::is_available() ? "cuda:0" : "cpu"; }

int64_t PeakMemoryBytes(const std::string& device) {
  auto parsed = ParseDevice(device);
  if (!parsed.ok()) return 0;
  if (parsed->is_cuda()) {
#ifdef SHEARS_WITH_CUDA
    namespace allocator = c10::cuda::CUDACachingAllocator;
    const auto stats = allocator::getDeviceStats(parsed->index());
    return stats.reserved_bytes[static_cast<size_t>(allocator::StatType::AGGREGATE)].peak;
#else
    return 0;
#endif
  }
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmHWM:  1234 kB"
  }
  return 0;
}

void ResetPeakMemory(const std::string& device) {
  auto parsed = ParseDevice(device);
  if (!parsed.ok()) return;
  if (parsed->is_cuda()) {
#ifdef SHEARS_WITH_CUDA
    c10::cuda::CUDACachingAllocator::resetPeakStats(parsed->index());
#endif
    return;
  }
  // "5" resets the peak resident set size to the current one (proc(5), /proc/pid/clear_refs).
  std::ofstream("/proc/self/clear_refs") << "5";
}

}  // namespace shears::engine
