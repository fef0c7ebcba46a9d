#include "worker/engine/io/tensor_io.h"

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

absl::StatusOr<DType> DTypeOf(torch::ScalarType type) {
  for (DType d : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64, DType::kI32, DType::kI16,
                  DType::kI8, DType::kU8, DType::kBool}) {
    if (ToScalarType(d) == type) return d;
  }
  return absl::InvalidArgumentError("tensor dtype has no safetensors name");
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

absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<TensorDecl> decls;
  for (const auto& [name, t] : tensors) {
    auto dtype = DTypeOf(t.scalar_type());
    if (!dtype.ok()) return dtype.status();
    decls.push_back({name, *dtype, t.sizes().vec()});
  }
  auto writer = SafetensorsWriter::Create(path, decls, metadata);
  if (!writer.ok()) return writer.status();
  for (const auto& [name, t] : tensors) {
    torch::Tensor holder;
    if (auto st = (*writer)->Write(name, TensorBytes(t, holder)); !st.ok()) return st;
  }
  return (*writer)->Close();
}

}  // namespace shears::engine
