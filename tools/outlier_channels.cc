#include "tools/outlier_channels.h"

#include <filesystem>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/tensor_io.h"

namespace shears::tools {
namespace fs = std::filesystem;
using engine::LoadTensor;
using engine::ModelDir;
using engine::NamedTensors;

absl::Status WriteWithOutlierChannels(const std::string& llama_dir, const std::string& out_dir,
                                      const std::vector<int64_t>& channels, double scale) {
  SHEARS_ASSIGN_OR_RETURN(auto model, ModelDir::Open(llama_dir));
  if (model->config().value("model_type", "") != "llama" || model->sharded()) {
    return absl::InvalidArgumentError("outlier channels are put into single-file llama models only");
  }
  auto index = torch::tensor(channels, torch::kInt64);
  // The linears that read each norm's output.
  const std::map<std::string, std::vector<std::string>> readers = {
      {"input_layernorm.weight", {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"}},
      {"post_attention_layernorm.weight", {"mlp.gate_proj.weight", "mlp.up_proj.weight"}},
  };
  std::map<std::string, torch::Tensor> tensors;
  NamedTensors ordered;
  for (const auto& info : model->files().front()->tensors()) {
    tensors[info.name] = LoadTensor(*model->files().front(), info).to(torch::kFloat32);
    ordered.emplace_back(info.name, tensors[info.name]);
  }
  for (auto& [name, t] : tensors) {
    for (const auto& [norm, linears] : readers) {
      if (!absl::EndsWith(name, norm)) continue;
      const std::string prefix = name.substr(0, name.size() - norm.size());
      t.index_copy_(0, index, t.index_select(0, index) * scale);
      for (const auto& linear : linears) {
        auto& w = tensors.at(prefix + linear);
        w.index_copy_(1, index, w.index_select(1, index) / scale);
      }
    }
  }
  SHEARS_RETURN_IF_ERROR(MakeDirectories(out_dir));
  for (const auto& entry : fs::directory_iterator(llama_dir)) {
    if (entry.path().filename() == engine::kSingleWeightsFile) continue;
    SHEARS_RETURN_IF_ERROR(CopyFileAtomically(entry.path().string(), (fs::path(out_dir) / entry.path().filename()).string()));
  }
  return engine::WriteSafetensors((fs::path(out_dir) / engine::kSingleWeightsFile).string(), ordered,
                                  model->files().front()->metadata());
}

}  // namespace shears::tools
