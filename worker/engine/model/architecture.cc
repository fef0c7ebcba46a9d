#include "worker/engine/model/architecture.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/engine/io/tensor_io.h"

namespace shears::engine {
namespace {

absl::Status CheckTensor(const ModelDir& model, const std::string& name, const TensorSpec& spec) {
  const auto* at = model.Find(name);
  if (at == nullptr) {
    if (spec.optional) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat(model.dir(), ": tensor ", name, " is missing"));
  }
  const DType dt = at->info->dtype;
  if (dt != DType::kF32 && dt != DType::kF16 && dt != DType::kBF16 && dt != DType::kF64) {
    return absl::DataLossError(absl::StrCat(BaseName(at->file->path()), ": tensor ", name, " has dtype ",
                                            DTypeName(dt), ", expected a floating-point type"));
  }
  if (at->info->shape != spec.shape) {
    return absl::DataLossError(absl::StrCat(BaseName(at->file->path()), ": tensor ", name, " has shape [",
                                            absl::StrJoin(at->info->shape, ", "), "], config.json implies [",
                                            absl::StrJoin(spec.shape, ", "), "]"));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<TensorSpec> Architecture::BlockTensors(int block) const {
  std::vector<TensorSpec> out;
  for (auto& spec : DenseBlockTensors(block)) {
    auto factored = config_.low_rank.find(BlockPrefix(block) + spec.name);
    if (factored == config_.low_rank.end()) {
      out.push_back(std::move(spec));
      continue;
    }
    const int64_t rank = factored->second;
    const bool transposed = LinearsStoredTransposed();
    const int64_t rows = spec.shape[transposed ? 1 : 0], columns = spec.shape[transposed ? 0 : 1];
    const FactorNames names = FactorNamesOf(spec.name);
    out.push_back({names.u, {rows, rank}});
    out.push_back({names.v, {rank, columns}});
  }
  return out;
}

std::vector<FusedLinear> Architecture::FusedLinears(int block) const {
  std::vector<FusedLinear> out;
  for (auto& group : FusedGroups()) {
    const bool factored = std::any_of(group.parts.begin(), group.parts.end(), [&](const std::string& part) {
      return config_.low_rank.count(BlockPrefix(block) + part) > 0;
    });
    if (!factored) out.push_back(std::move(group));
  }
  return out;
}

std::vector<TensorSpec> Architecture::StoredBlockTensors(int block) const {
  const std::vector<FusedLinear> groups = FusedLinears(block);
  std::map<std::string, const FusedLinear*> group_of;
  for (const auto& group : groups) {
    for (const auto& part : group.parts) group_of[part] = &group;
  }
  const std::vector<TensorSpec> specs = BlockTensors(block);
  std::map<std::string, int64_t> rows;
  for (const auto& spec : specs) rows[spec.name] = spec.shape[0];
  std::vector<TensorSpec> out;
  for (const auto& spec : specs) {
    auto group = group_of.find(spec.name);
    if (group == group_of.end()) {
      out.push_back(spec);
    } else if (spec.name == group->second->parts.front()) {  // the group's tensor where its first part was
      int64_t stacked = 0;
      for (const auto& part : group->second->parts) stacked += rows.at(part);
      out.push_back({group->second->name, {stacked, spec.shape[1]}, false, true});
    }
  }
  return out;
}

TensorMap Architecture::LoadBlock(const ModelDir& model, int block, const torch::Device& device,
                                  bool stored_dtype) const {
  return Split(block, LoadTensors(model, BlockPrefix(block), StoredBlockTensors(block), device, stored_dtype));
}

TensorMap Architecture::Split(int block, const TensorMap& tensors) const {
  TensorMap out = tensors;
  std::map<std::string, int64_t> rows;
  for (const auto& spec : BlockTensors(block)) rows[spec.name] = spec.shape[0];
  for (const auto& group : FusedLinears(block)) {
    auto fused = out.find(group.name);
    if (fused == out.end()) continue;
    const torch::Tensor stored = fused->second;
    out.erase(fused);
    int64_t row = 0;
    for (const auto& part : group.parts) {
      // Their own storage: methods and training change each part in place on its own.
      out[part] = stored.narrow(0, row, rows.at(part)).clone();
      row += rows.at(part);
    }
  }
  return out;
}

TensorMap Architecture::Fuse(int block, const TensorMap& tensors) const {
  TensorMap out = tensors;
  for (const auto& group : FusedLinears(block)) {
    std::vector<torch::Tensor> parts;
    for (const auto& part : group.parts) {
      auto it = out.find(part);
      if (it != out.end()) parts.push_back(it->second);
    }
    if (parts.size() != group.parts.size()) continue;
    for (const auto& part : group.parts) out.erase(part);
    out[group.name] = torch::cat(parts, 0);
  }
  return out;
}

std::string Architecture::StoredNameOf(const std::string& name) const {
  const int b = BlockOf(name);
  if (b < 0) return name;
  const std::string prefix = BlockPrefix(b);
  for (const auto& group : FusedLinears(b)) {
    for (const auto& part : group.parts) {
      if (prefix + part == name) return prefix + group.name;
    }
  }
  return name;
}

int Architecture::BlockOf(const std::string& name) const {
  for (int b = 0; b < num_blocks(); ++b) {
    if (absl::StartsWith(name, BlockPrefix(b))) return b;
  }
  return -1;
}

std::vector<LinearWeight> Architecture::BlockLinears(int block) const {
  std::vector<LinearWeight> out;
  for (const auto& t : BlockTensors(block)) {
    if (t.prunable) out.push_back({BlockPrefix(block) + t.name, t.shape});
  }
  return out;
}

absl::Status Architecture::CheckWeights(const ModelDir& model) const {
  for (const auto& t : OuterTensors()) SHEARS_RETURN_IF_ERROR(CheckTensor(model, t.name, t));
  for (int b = 0; b < num_blocks(); ++b) {
    for (const auto& t : StoredBlockTensors(b)) SHEARS_RETURN_IF_ERROR(CheckTensor(model, BlockPrefix(b) + t.name, t));
  }
  return absl::OkStatus();
}

TensorMap LoadTensors(const ModelDir& model, const std::string& prefix, const std::vector<TensorSpec>& specs,
                      const torch::Device& device, bool stored_dtype) {
  TensorMap out;
  for (const auto& spec : specs) {
    const auto* at = model.Find(prefix + spec.name);
    if (at == nullptr) continue;  // CheckWeights has vouched for the required ones
    // Converted straight from the mapped bytes when they are aligned for their dtype (one pass over
    // them, not a copy and then a conversion), and always into memory of its own: the pages of
    // the mapping are given back right after.
    auto bytes = at->file->Data(*at->info);
    const auto dtype = ToScalarType(at->info->dtype);
    const auto wanted = stored_dtype ? dtype : torch::kFloat32;
    if (reinterpret_cast<uintptr_t>(bytes.data()) % c10::elementSize(dtype) == 0) {
      out[spec.name] = torch::from_blob(bytes.data(), at->info->shape, torch::TensorOptions().dtype(dtype))
                           .to(device, wanted, /*non_blocking=*/false, /*copy=*/true);
      at->file->Release(*at->info);
    } else {
      out[spec.name] = LoadTensor(*at->file, *at->info).to(device, wanted);
    }
  }
  return out;
}

}  // namespace shears::engine
