#include "worker/engine/runtime/device.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace shears::engine {

absl::StatusOr<torch::Device> ParseDevice(const std::string& text) {
  if (text == "cpu") return torch::Device(torch::kCPU);
  int index = 0;
  if (text != "cuda") {
    if (text.rfind("cuda:", 0) != 0 || !absl::SimpleAtoi(text.substr(5), &index) || index < 0) {
      return absl::InvalidArgumentError(absl::StrCat("device '", text, "' is not cpu, cuda or cuda:N"));
    }
  }
  if (!torch::cuda::is_available()) {
    return absl::FailedPreconditionError(absl::StrCat("device ", text, ": this LibTorch build sees no CUDA device"));
  }
  if (index >= static_cast<int>(torch::cuda::device_count())) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", text, ": only ", torch::cuda::device_count(), " CUDA device(s)"));
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace shears::engine
