#include "worker/engine/model/architecture.h"

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
    for (const auto& t : BlockTensors(b)) SHEARS_RETURN_IF_ERROR(CheckTensor(model, BlockPrefix(b) + t.name, t));
  }
  return absl::OkStatus();
}

TensorMap LoadTensors(const ModelDir& model, const std::string& prefix, const std::vector<TensorSpec>& specs,
                      const torch::Device& device) {
  TensorMap out;
  for (const auto& spec : specs) {
    const auto* at = model.Find(prefix + spec.name);
    if (at == nullptr) continue;  // CheckWeights has vouched for the required ones
    out[spec.name] = LoadTensor(*at->file, *at->info).to(device, torch::kFloat32);
  }
  return out;
}

}  // namespace shears::engine
