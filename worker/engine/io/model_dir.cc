#include "worker/engine/io/model_dir.h"

#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace shears::engine {
namespace fs = std::filesystem;

absl::StatusOr<nlohmann::json> ReadJsonObject(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto parsed = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": not a JSON object"));
  }
  return parsed;
}

std::string BaseName(const std::string& path) { return fs::path(path).filename().string(); }

absl::Status WriteIndexWithWeightMap(const std::string& from, const std::string& to, const nlohmann::json& weight_map) {
  auto index = ReadJsonObject((fs::path(from) / kIndexFile).string());
  if (!index.ok()) return index.status();
  (*index)["weight_map"] = weight_map;
  // metadata.total_size is the bytes of tensor data the shards hold, as they are now.
  std::set<std::string> shards;
  for (const auto& [name, file] : weight_map.items()) shards.insert(file.get<std::string>());
  uint64_t total = 0;
  for (const auto& shard : shards) {
    auto file = SafetensorsFile::Open((fs::path(to) / shard).string());
    if (!file.ok()) return file.status();
    for (const auto& info : (*file)->tensors()) total += info.nbytes();
  }
  (*index)["metadata"]["total_size"] = total;
  return WriteFileAtomically((fs::path(to) / kIndexFile).string(), index->dump(2));
}

absl::StatusOr<std::vector<std::string>> CopySideFiles(const std::string& from, const std::string& to) {
  static constexpr const char* kSideFiles[] = {
      "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
      "tokenizer.model",        "vocab.json",     "merges.txt",            "added_tokens.json",
  };
  std::vector<std::string> names(std::begin(kSideFiles), std::end(kSideFiles));
  // Every Python module at the top: the remote code a trust_remote_code config's auto_map names
  // (NVIDIA's DeciLM classes) and the modules it imports from beside it.
  std::error_code error;  // an unreadable directory copies no module
  for (const auto& entry : fs::directory_iterator(from, error)) {
    if (entry.path().extension() == ".py" && entry.is_regular_file() && !entry.is_symlink()) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::vector<std::string> copied;
  for (const std::string& name : names) {
    const fs::path source = fs::path(from) / name;
    if (!fs::exists(source)) continue;
    if (auto st = CopyFileAtomically(source.string(), (fs::path(to) / name).string()); !st.ok()) return st;
    copied.push_back(name);
  }
  return copied;
}

absl::StatusOr<std::unique_ptr<ModelDir>> ModelDir::Open(const std::string& dir) {
  if (!fs::is_directory(dir)) {
    return absl::NotFoundError(absl::StrCat("model directory ", dir, " does not exist"));
  }
  auto model = std::make_unique<ModelDir>();
  model->dir_ = dir;
  auto config = ReadJsonObject((fs::path(dir) / kConfigFile).string());
  if (!config.ok()) return config.status();
  model->config_ = std::move(*config);

  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;
  const std::string index_path = (fs::path(dir) / kIndexFile).string();
  if (fs::exists(index_path)) {
    auto index = ReadJsonObject(index_path);
    if (!index.ok()) return index.status();
    auto wm = index->find("weight_map");
    if (wm == index->end() || !wm->is_object()) {
      return absl::DataLossError(absl::StrCat(index_path, ": no weight_map object"));
    }
    std::set<std::string> shards;
    for (const auto& [name, file] : wm->items()) {
      if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos) {
        return absl::DataLossError(absl::StrCat(index_path, ": tensor ", name, " maps to an invalid file name"));
      }
      weight_map[name] = file.get<std::string>();
      shards.insert(file.get<std::string>());
    }
    shard_names.assign(shards.begin(), shards.end());
    model->sharded_ = true;
  } else {
    shard_names.push_back(kSingleWeightsFile);
  }

  for (const auto& shard : shard_names) {
    auto file = SafetensorsFile::Open((fs::path(dir) / shard).string());
    if (!file.ok()) return file.status();
    for (const auto& info : (*file)->tensors()) {
      if (!model->tensors_.emplace(info.name, Located{file->get(), &info}).second) {
        return absl::DataLossError(absl::StrCat(dir, ": tensor ", info.name, " appears in two weight files"));
      }
    }
    model->files_.push_back(std::move(*file));
  }
  for (const auto& [name, shard] : weight_map) {
    const Located* at = model->Find(name);
    if (at == nullptr || BaseName(at->file->path()) != shard) {
      return absl::DataLossError(absl::StrCat(index_path, ": tensor ", name, " is not in ", shard));
    }
  }
  return model;
}

const ModelDir::Located* ModelDir::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace shears::engine
