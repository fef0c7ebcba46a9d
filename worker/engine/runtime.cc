#include "worker/engine/runtime.h"

#include <malloc.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "worker/engine/device.h"

namespace shears::engine {

absl::Status ConfigureRuntime(int threads, const std::string& device) {
  if (threads < 1) return absl::InvalidArgumentError(absl::StrCat("--threads must be at least 1, got ", threads));
  // glibc raises its mmap threshold to the size of each large block it frees, after which
  // block-sized tensors come from the heap and fragment it: the worker's memory then grows with
  // every decoder block (measured: 280 -> 643 MiB from 4 to 32 blocks). A fixed threshold keeps
  // large tensors in their own mappings, returned to the system when freed.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  torch::set_num_threads(threads);
  return ParseDevice(device).status();
}

std::string DefaultDevice() { return torch::cuda::is_available() ? "cuda:0" : "cpu"; }

}  // namespace shears::engine
