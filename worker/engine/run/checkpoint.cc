#include "worker/engine/run/checkpoint.h"

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "worker/engine/io/safetensors.h"
#include "worker/engine/io/tensor_io.h"

namespace shears::engine {
namespace {

constexpr char kFile[] = "checkpoint.safetensors";

nlohmann::json LayersToJson(const std::vector<LayerReport>& layers) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& l : layers) {
    out.push_back({{"name", l.name}, {"block", l.block}, {"parameters", l.parameters}, {"zeros", l.zeros},
                   {"reconstruction_error", l.reconstruction_error}, {"seconds", l.seconds}});
  }
  return out;
}

std::vector<LayerReport> LayersFromJson(const nlohmann::json& json) {
  std::vector<LayerReport> out;
  for (const auto& l : json) {
    out.push_back({l.at("name").get<std::string>(), l.at("block").get<int>(), l.at("parameters").get<int64_t>(),
                   l.at("zeros").get<int64_t>(), l.at("reconstruction_error").get<double>(),
                   l.at("seconds").get<double>()});
  }
  return out;
}

nlohmann::json InfluencesToJson(const std::vector<BlockRedundancy>& blocks) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& b : blocks) {
    out.push_back({{"block", b.block}, {"block_influence", b.block_influence}});
    if (b.attention_influence) out.back()["attention_influence"] = *b.attention_influence;
    if (b.mlp_influence) out.back()["mlp_influence"] = *b.mlp_influence;
  }
  return out;
}

std::vector<BlockRedundancy> InfluencesFromJson(const nlohmann::json& json) {
  std::vector<BlockRedundancy> out;
  for (const auto& b : json) {
    out.push_back({b.at("block").get<int>(), b.at("block_influence").get<double>()});
    if (b.contains("attention_influence")) out.back().attention_influence = b["attention_influence"].get<double>();
    if (b.contains("mlp_influence")) out.back().mlp_influence = b["mlp_influence"].get<double>();
  }
  return out;
}

}  // namespace

std::string CheckpointFingerprint(const PruneOptions& options, const ModelDir& model) {
  const auto& sl = options.sparsellm;
  std::string text = absl::StrCat("method=", static_cast<int>(options.method), " structure=",
                                  static_cast<int>(options.structure), " sparsity=", options.target_sparsity,
                                  " n:m=", options.n, ":", options.m, " sparsellm=", sl.iterations, ":", sl.alpha,
                                  ":", sl.beta, ":", sl.gamma, " seed=", options.seed, " device=", options.device);
  if (options.evaluation) {
    text += absl::StrCat(" eval=", options.evaluation->path, ":", options.evaluation->seq_len, ":",
                         options.evaluation->max_tokens);
  }
  if (options.calibration) {
    text += absl::StrCat(" calibration=", options.calibration->path, ":", options.calibration->num_samples, ":",
                         options.calibration->seq_len, ":", options.calibration->seed);
  }
  for (const auto& [name, sparsity] : options.linear_sparsity) text += absl::StrCat(" ", name, "=", sparsity);
  for (int64_t neurons : options.neurons_removed) text += absl::StrCat(" neurons=", neurons);
  for (const auto& file : model.files()) {
    std::error_code ec;
    const auto time = std::filesystem::last_write_time(file->path(), ec).time_since_epoch().count();
    text += absl::StrCat(" ", file->path(), ":", std::filesystem::file_size(file->path(), ec), ":", time);
  }
  return Sha256Hex(text);
}

absl::Status SaveCheckpoint(const std::string& dir, const std::string& fingerprint, const Checkpoint& checkpoint) {
  SHEARS_RETURN_IF_ERROR(MakeDirectories(dir));
  std::vector<TensorDecl> decls;
  std::map<std::string, torch::Tensor> cpu;
  for (const auto& [name, t] : checkpoint.activations) {
    cpu[name] = t.to(torch::kCPU, torch::kFloat32).contiguous();
    decls.push_back({name, DType::kF32, cpu[name].sizes().vec()});
  }
  const std::map<std::string, std::string> metadata = {{"fingerprint", fingerprint},
                                                       {"blocks_done", std::to_string(checkpoint.blocks_done)},
                                                       {"layers", LayersToJson(checkpoint.layers).dump()},
                                                       {"influences", InfluencesToJson(checkpoint.influences).dump()}};
  const std::string path = (std::filesystem::path(dir) / kFile).string();
  const std::string tmp = path + ".tmp";
  SHEARS_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::Create(tmp, decls, metadata));
  for (const auto& [name, t] : cpu) {
    torch::Tensor holder;
    SHEARS_RETURN_IF_ERROR(writer->Write(name, TensorBytes(t, holder)));
  }
  SHEARS_RETURN_IF_ERROR(writer->Close());
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return absl::InternalError("cannot replace " + path);
  return absl::OkStatus();
}

std::optional<Checkpoint> LoadCheckpoint(const std::string& dir, const std::string& fingerprint,
                                         const torch::Device& device) {
  auto file = SafetensorsFile::Open((std::filesystem::path(dir) / kFile).string());
  if (!file.ok()) return std::nullopt;
  const auto& meta = (*file)->metadata();
  auto fp = meta.find("fingerprint");
  auto done = meta.find("blocks_done");
  auto layers = meta.find("layers");
  auto influences = meta.find("influences");
  Checkpoint checkpoint;
  // A checkpoint written before the influences were kept is not resumed from: they would be missing.
  if (fp == meta.end() || fp->second != fingerprint || done == meta.end() || layers == meta.end() ||
      influences == meta.end() || !absl::SimpleAtoi(done->second, &checkpoint.blocks_done)) {
    return std::nullopt;
  }
  auto parsed = nlohmann::json::parse(layers->second, nullptr, /*allow_exceptions=*/false);
  auto parsed_influences = nlohmann::json::parse(influences->second, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || parsed_influences.is_discarded()) return std::nullopt;
  try {
    checkpoint.layers = LayersFromJson(parsed);
    checkpoint.influences = InfluencesFromJson(parsed_influences);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
  for (const auto& info : (*file)->tensors()) checkpoint.activations[info.name] = LoadTensor(**file, info).to(device);
  return checkpoint;
}

}  // namespace shears::engine
