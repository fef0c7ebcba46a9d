#pragma once
// Moves tensors between safetensors bytes and LibTorch.

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "worker/engine/safetensors.h"

namespace shears::engine {

torch::ScalarType ToScalarType(DType dtype);
// A tensor that owns a copy of the stored bytes, on the CPU in the stored dtype.
torch::Tensor LoadTensor(const SafetensorsFile& file, const TensorInfo& info);
// The bytes of a CPU tensor (made contiguous first if needed; `holder` keeps them alive).
absl::Span<const uint8_t> TensorBytes(const torch::Tensor& tensor, torch::Tensor& holder);

}  // namespace shears::engine
