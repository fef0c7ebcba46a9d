#include "worker/engine/io/compressed_tensors.h"

#include <filesystem>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/io/model_dir.h"

namespace shears::engine {
namespace fs = std::filesystem;

namespace {

constexpr char kWeightSuffix[] = ".weight";
constexpr char kBitmaskSuffix[] = ".bitmask";
constexpr char kCompressedSuffix[] = ".compressed";
constexpr char kShapeSuffix[] = ".shape";
constexpr char kRowOffsetsSuffix[] = ".row_offsets";
// The compressed-tensors release whose layout this writes.
constexpr char kCompressedTensorsVersion[] = "0.9.0";

// numpy.packbits(mask, axis=-1, bitorder="little"): bit j of byte b is column 8b + j.
torch::Tensor PackBits(const torch::Tensor& mask) {
  const int64_t rows = mask.size(0), cols = mask.size(1), bytes = (cols + 7) / 8;
  auto padded = torch::zeros({rows, bytes * 8}, torch::kInt32);
  padded.slice(1, 0, cols).copy_(mask);
  auto weights = torch::pow(2, torch::arange(8, torch::kInt32));
  return (padded.view({rows, bytes, 8}) * weights).sum(-1).to(torch::kUInt8);
}

torch::Tensor UnpackBits(const torch::Tensor& packed, int64_t rows, int64_t cols) {
  auto shifts = torch::arange(8, torch::kInt32);
  auto bits = packed.to(torch::kInt32).unsqueeze(-1).bitwise_right_shift(shifts).bitwise_and(1);
  return bits.view({rows, -1}).slice(1, 0, cols).to(torch::kBool);
}

// The two largest magnitudes of every group of four along the rows.
torch::Tensor Keep24(const torch::Tensor& weight) {
  auto groups = weight.to(torch::kFloat32).abs().reshape({-1, 4});
  auto keep = torch::zeros(groups.sizes(), torch::kBool);
  keep.scatter_(1, std::get<1>(groups.topk(2, 1)), true);
  return keep.view(weight.sizes());
}

std::string Prefix(const std::string& name) { return std::string(absl::StripSuffix(name, kWeightSuffix)); }

// Tensors of one file, grouped back into dense weights.
absl::StatusOr<NamedTensors> DecompressFile(const SafetensorsFile& file, const std::string& format) {
  std::map<std::string, torch::Tensor> parts;
  for (const auto& info : file.tensors()) parts[info.name] = LoadTensor(file, info);
  NamedTensors out;
  for (const auto& info : file.tensors()) {
    const std::string& name = info.name;
    if (!absl::EndsWith(name, kBitmaskSuffix)) {
      if (absl::EndsWith(name, kCompressedSuffix) || absl::EndsWith(name, kShapeSuffix) ||
          absl::EndsWith(name, kRowOffsetsSuffix)) {
        continue;  // read with its bitmask
      }
      out.emplace_back(name, parts.at(name));
      continue;
    }
    const std::string prefix(absl::StripSuffix(name, kBitmaskSuffix));
    auto shape_it = parts.find(prefix + kShapeSuffix);
    auto values_it = parts.find(prefix + kCompressedSuffix);
    if (shape_it == parts.end() || values_it == parts.end()) {
      return absl::DataLossError(absl::StrCat(BaseName(file.path()), ": ", prefix, " has a bitmask but no ",
                                              shape_it == parts.end() ? "shape" : "compressed values"));
    }
    auto shape = shape_it->second.reshape(-1).to(torch::kInt64);
    if (shape.numel() != 2) return absl::DataLossError(absl::StrCat(prefix, kShapeSuffix, " must hold two sizes"));
    const int64_t rows = shape[0].item<int64_t>(), cols = shape[1].item<int64_t>();
    const auto& bitmask = parts.at(name);
    if (bitmask.dim() != 2 || bitmask.size(0) != rows || bitmask.size(1) != (cols + 7) / 8) {
      return absl::DataLossError(absl::StrCat(name, " does not match the shape [", rows, ", ", cols, "]"));
    }
    auto mask = UnpackBits(bitmask, rows, cols);
    const auto& values = values_it->second;
    if (mask.sum().item<int64_t>() != values.numel()) {
      return absl::DataLossError(absl::StrCat(prefix, ": the bitmask flags ", mask.sum().item<int64_t>(),
                                              " weights but ", values.numel(), " values are stored (", format, ")"));
    }
    auto dense = torch::zeros({rows, cols}, values.options());
    dense.masked_scatter_(mask, values.reshape(-1));
    out.emplace_back(prefix + kWeightSuffix, dense);
  }
  return out;
}

// The weight_map of an index for the tensors each file now holds.
nlohmann::json WeightMap(const std::map<std::string, NamedTensors>& files) {
  nlohmann::json map = nlohmann::json::object();
  for (const auto& [file, tensors] : files) {
    for (const auto& [name, t] : tensors) map[name] = file;
  }
  return map;
}

// Copies config.json with `edit` applied.
absl::Status WriteConfig(const ModelDir& model, const std::string& out_dir,
                         const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json config = model.config();
  edit(config);
  return WriteFileAtomically((fs::path(out_dir) / kConfigFile).string(), config.dump(2));
}

}  // namespace

std::string SparsityFormat(const nlohmann::json& config) {
  auto q = config.find("quantization_config");
  if (q == config.end() || !q->is_object()) return "";
  auto s = q->find("sparsity_config");
  if (s == q->end() || !s->is_object()) return "";
  return s->value("format", "");
}

absl::StatusOr<NamedTensors> CompressWeight(const std::string& name, const torch::Tensor& weight,
                                            const std::string& format) {
  if (weight.dim() != 2) return absl::InvalidArgumentError(absl::StrCat(name, " is not a matrix"));
  const int64_t rows = weight.size(0), cols = weight.size(1);
  const std::string prefix = Prefix(name);
  if (format == kSparseBitmaskFormat) {
    auto mask = weight != 0;
    auto counts = mask.sum(1, /*keepdim=*/false, torch::kInt64);
    return NamedTensors{{prefix + kShapeSuffix, torch::tensor({rows, cols}, torch::kInt64)},
                        {prefix + kCompressedSuffix, weight.masked_select(mask)},
                        {prefix + kBitmaskSuffix, PackBits(mask)},
                        {prefix + kRowOffsetsSuffix, counts.cumsum(0) - counts}};
  }
  if (format == kSparse24BitmaskFormat) {
    if (cols % 4 != 0) return absl::InvalidArgumentError(absl::StrCat(name, ": ", cols, " columns are not groups of 4"));
    auto keep = Keep24(weight);
    if ((weight != 0).logical_and(keep.logical_not()).any().item<bool>()) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " is not 2:4 sparse along its stored rows: some group of four holds more than two non-zeros"));
    }
    return NamedTensors{{prefix + kShapeSuffix, torch::tensor({rows, cols}, torch::kInt64).reshape({2, 1})},
                        {prefix + kCompressedSuffix, weight.masked_select(keep).view({rows, cols / 2})},
                        {prefix + kBitmaskSuffix, PackBits(keep)}};
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown sparse format '", format, "'"));
}

absl::StatusOr<std::vector<std::string>> CompressModel(const std::string& dense_dir, const std::string& out_dir,
                                                       const std::set<std::string>& compress,
                                                       const SparsityDescription& sparsity) {
  SHEARS_ASSIGN_OR_RETURN(auto model, ModelDir::Open(dense_dir));
  SHEARS_RETURN_IF_ERROR(MakeDirectories(out_dir));
  std::vector<std::string> written;
  std::map<std::string, NamedTensors> files;
  for (const auto& file : model->files()) {
    NamedTensors tensors;
    for (const auto& info : file->tensors()) {
      torch::Tensor t = LoadTensor(*file, info);
      if (!compress.count(info.name)) {
        tensors.emplace_back(info.name, t);
        continue;
      }
      SHEARS_ASSIGN_OR_RETURN(NamedTensors parts, CompressWeight(info.name, t, sparsity.format));
      tensors.insert(tensors.end(), parts.begin(), parts.end());
    }
    const std::string base = BaseName(file->path());
    SHEARS_RETURN_IF_ERROR(WriteSafetensors((fs::path(out_dir) / base).string(), tensors, file->metadata()));
    written.push_back(base);
    files[base] = std::move(tensors);
  }
  if (model->sharded()) {
    SHEARS_RETURN_IF_ERROR(WriteIndexWithWeightMap(dense_dir, out_dir, WeightMap(files)));
    written.push_back(kIndexFile);
  }
  SHEARS_RETURN_IF_ERROR(WriteConfig(*model, out_dir, [&](nlohmann::json& config) {
    config["quantization_config"] = {
        {"quant_method", "compressed-tensors"},
        {"version", kCompressedTensorsVersion},
        {"sparsity_config",
         {{"format", sparsity.format},
          {"global_sparsity", sparsity.global_sparsity},
          {"sparsity_structure", sparsity.structure},
          {"targets", {"Linear"}},
          {"ignore", {"lm_head"}},
          {"registry_requires_subclass", false}}}};
  }));
  written.push_back(kConfigFile);
  return written;
}

absl::Status DecompressModel(const std::string& compressed_dir, const std::string& out_dir) {
  SHEARS_ASSIGN_OR_RETURN(auto model, ModelDir::Open(compressed_dir));
  const std::string format = SparsityFormat(model->config());
  if (format != kSparseBitmaskFormat && format != kSparse24BitmaskFormat) {
    return absl::InvalidArgumentError(absl::StrCat(compressed_dir, ": sparse format '", format, "' is not supported"));
  }
  SHEARS_RETURN_IF_ERROR(MakeDirectories(out_dir));
  std::map<std::string, NamedTensors> files;
  for (const auto& file : model->files()) {
    SHEARS_ASSIGN_OR_RETURN(NamedTensors tensors, DecompressFile(*file, format));
    const std::string base = BaseName(file->path());
    SHEARS_RETURN_IF_ERROR(WriteSafetensors((fs::path(out_dir) / base).string(), tensors, file->metadata()));
    files[base] = std::move(tensors);
  }
  if (model->sharded()) SHEARS_RETURN_IF_ERROR(WriteIndexWithWeightMap(compressed_dir, out_dir, WeightMap(files)));
  SHEARS_RETURN_IF_ERROR(CopySideFiles(compressed_dir, out_dir).status());
  return WriteConfig(*model, out_dir, [](nlohmann::json& config) {
    config["quantization_config"].erase("sparsity_config");
    if (config["quantization_config"].size() <= 2) config.erase("quantization_config");
  });
}

}  // namespace shears::engine
