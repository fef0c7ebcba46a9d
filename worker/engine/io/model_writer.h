#pragma once
// Writes a model directory whose tensors derive from an input model's: some dropped, renamed or
// reshaped (structured pruning). Each output tensor goes to the weights file named like its
// source's, so a sharded model stays sharded; the caller's config.json, the index and the
// tokenizer files complete the directory.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/safetensors.h"

namespace shears::engine {

struct OutputTensor {
  std::string name;
  std::string file;  // base name of the weights file, e.g. model-00001-of-00002.safetensors
  DType dtype;
  std::vector<int64_t> shape;
};

class ModelWriter {
 public:
  // Declares every tensor of the output, in order.
  static absl::StatusOr<std::unique_ptr<ModelWriter>> Create(const ModelDir& input, const std::string& out_dir,
                                                             const std::vector<OutputTensor>& tensors);

  // `tensor` (any device and float dtype) is stored in the declared dtype and shape.
  absl::Status Write(const std::string& name, const torch::Tensor& tensor);
  // Closes the weights files, writes `config`, the index when the input had one and the side
  // files. Returns every file written, relative to the output directory.
  absl::StatusOr<std::vector<std::string>> Finish(const nlohmann::json& config);

 private:
  ModelWriter(const ModelDir& input, std::string out_dir) : input_(input), out_dir_(std::move(out_dir)) {}

  const ModelDir& input_;
  const std::string out_dir_;
  std::map<std::string, std::unique_ptr<SafetensorsWriter>> files_;  // by base name
  std::map<std::string, OutputTensor> tensors_;
};

}  // namespace shears::engine
