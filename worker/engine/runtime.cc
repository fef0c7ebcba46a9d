#include "worker/engine/runtime.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "worker/engine/device.h"

namespace shears::engine {

absl::Status ConfigureRuntime(int threads, const std::string& device) {
  if (threads < 1) return absl::InvalidArgumentError(absl::StrCat("--threads must be at least 1, got ", threads));
  torch::set_num_threads(threads);
  return ParseDevice(device).status();
}

std::string DefaultDevice() { return torch::cuda::is_available() ? "cuda:0" : "cpu"; }

}  // namespace shears::engine
