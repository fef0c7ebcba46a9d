#pragma once
// Moves tensors between safetensors bytes and LibTorch.

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "worker/engine/io/safetensors.h"

namespace shears::engine {

torch::ScalarType ToScalarType(DType dtype);
absl::StatusOr<DType> DTypeOf(torch::ScalarType type);
// A tensor that owns a copy of the stored bytes, on the CPU in the stored dtype.
torch::Tensor LoadTensor(const SafetensorsFile& file, const TensorInfo& info);
// The bytes of a CPU tensor (made contiguous first if needed; `holder` keeps them alive).
absl::Span<const uint8_t> TensorBytes(const torch::Tensor& tensor, torch::Tensor& holder);

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;
// Writes `tensors` (in their own dtypes, in this order) as one safetensors file.
absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace shears::engine
