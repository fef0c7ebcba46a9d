#pragma once
// A Hugging Face model directory: config.json and the weights, either one model.safetensors or the
// shards that model.safetensors.index.json names.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/io/safetensors.h"

namespace shears::engine {

inline constexpr char kConfigFile[] = "config.json";
inline constexpr char kSingleWeightsFile[] = "model.safetensors";
inline constexpr char kIndexFile[] = "model.safetensors.index.json";

class ModelDir {
 public:
  static absl::StatusOr<std::unique_ptr<ModelDir>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const nlohmann::json& config() const { return config_; }
  bool sharded() const { return sharded_; }
  // Weight files in the order of their names.
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

  struct Located {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  // Null when no weight file holds the tensor.
  const Located* Find(const std::string& name) const;

 private:
  std::string dir_;
  nlohmann::json config_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Located, std::less<>> tensors_;
};

// The file name part of a weight file's path.
std::string BaseName(const std::string& path);
// Copies the files besides config.json, the index and the weights that make a model directory
// complete (tokenizer, generation config, the Python modules of a trust_remote_code config) from
// `from` to `to`; returns their names.
absl::StatusOr<std::vector<std::string>> CopySideFiles(const std::string& from, const std::string& to);

// Writes `to`'s model.safetensors.index.json: `from`'s index with its weight_map replaced by
// `weight_map` (tensor name -> weights file) and metadata.total_size counted from the shards
// already in `to`, for a model whose tensors were renamed, reshaped or dropped.
absl::Status WriteIndexWithWeightMap(const std::string& from, const std::string& to, const nlohmann::json& weight_map);

// A JSON file that must hold an object (config.json, the index, tokenizer files).
absl::StatusOr<nlohmann::json> ReadJsonObject(const std::string& path);

}  // namespace shears::engine
