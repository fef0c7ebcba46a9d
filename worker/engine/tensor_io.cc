#include "worker/engine/tensor_io.h"

#include <cstring>

namespace shears::engine {

torch::ScalarType ToScalarType(DType dtype) {
  switch (dtype) {
    case DType::kF64: return torch::kFloat64;
    case DType::kF32: return torch::kFloat32;
    case DType::kF16: return torch::kFloat16;
    case DType::kBF16: return torch::kBFloat16;
    case DType::kI64: return torch::kInt64;
    case DType::kI32: return torch::kInt32;
    case DType::kI16: return torch::kInt16;
    case DType::kI8: return torch::kInt8;
    case DType::kU8: return torch::kUInt8;
    case DType::kBool: return torch::kBool;
  }
  return torch::kFloat32;
}

torch::Tensor LoadTensor(const SafetensorsFile& file, const TensorInfo& info) {
  // A copy rather than a view of the mapping: the data section need not be aligned for the dtype.
  torch::Tensor t = torch::empty(info.shape, torch::TensorOptions().dtype(ToScalarType(info.dtype)));
  auto bytes = file.Data(info);
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  file.Release(info);
  return t;
}

absl::Span<const uint8_t> TensorBytes(const torch::Tensor& tensor, torch::Tensor& holder) {
  holder = tensor.device().is_cpu() ? tensor.contiguous() : tensor.cpu().contiguous();
  return absl::Span<const uint8_t>(static_cast<const uint8_t*>(holder.data_ptr()),
                                   holder.numel() * holder.element_size());
}

}  // namespace shears::engine
