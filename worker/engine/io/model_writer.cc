#include "worker/engine/io/model_writer.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/io/nemotron_nas.h"
#include "worker/engine/io/tensor_io.h"

namespace shears::engine {
namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<ModelWriter>> ModelWriter::Create(const ModelDir& input, const std::string& out_dir,
                                                                 const std::vector<OutputTensor>& tensors) {
  std::unique_ptr<ModelWriter> writer(new ModelWriter(input, out_dir));
  SHEARS_RETURN_IF_ERROR(MakeDirectories(out_dir));
  std::map<std::string, std::vector<TensorDecl>> decls;
  for (const auto& t : tensors) {
    decls[t.file].push_back({t.name, t.dtype, t.shape});
    writer->tensors_[t.name] = t;
  }
  for (const auto& file : input.files()) {
    const std::string base = BaseName(file->path());
    if (!decls.count(base)) continue;
    SHEARS_ASSIGN_OR_RETURN(writer->files_[base], SafetensorsWriter::Create((fs::path(out_dir) / base).string(),
                                                                             decls[base], file->metadata()));
  }
  if (writer->files_.size() != decls.size()) return absl::InternalError("output tensors name unknown weight files");
  return writer;
}

absl::Status ModelWriter::Write(const std::string& name, const torch::Tensor& tensor) {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return absl::InternalError(absl::StrCat("undeclared output tensor ", name));
  const OutputTensor& out = it->second;
  if (tensor.sizes().vec() != out.shape) {
    return absl::InternalError(absl::StrCat(name, " has shape [", absl::StrJoin(tensor.sizes().vec(), ", "),
                                            "], declared [", absl::StrJoin(out.shape, ", "), "]"));
  }
  torch::Tensor holder;
  return files_.at(out.file)->Write(name, TensorBytes(tensor.to(torch::kCPU, ToScalarType(out.dtype)), holder));
}

absl::StatusOr<std::vector<std::string>> ModelWriter::Finish(const nlohmann::json& config) {
  std::vector<std::string> written;
  for (auto& [base, file] : files_) {
    SHEARS_RETURN_IF_ERROR(file->Close());
    written.push_back(base);
  }
  SHEARS_RETURN_IF_ERROR(WriteFileAtomically((fs::path(out_dir_) / kConfigFile).string(), config.dump(2)));
  written.push_back(kConfigFile);
  if (input_.sharded()) {
    nlohmann::json map = nlohmann::json::object();
    for (const auto& [name, t] : tensors_) map[name] = t.file;
    SHEARS_RETURN_IF_ERROR(WriteIndexWithWeightMap(input_.dir(), out_dir_, map));
    written.push_back(kIndexFile);
  }
  SHEARS_ASSIGN_OR_RETURN(auto side, CopySideFiles(input_.dir(), out_dir_));
  written.insert(written.end(), side.begin(), side.end());
  // After the input's: the configuration class of the layout written replaces an input's own.
  for (const auto& [name, text] : LayoutFiles(config)) {
    SHEARS_RETURN_IF_ERROR(WriteFileAtomically((fs::path(out_dir_) / name).string(), text));
    if (std::find(written.begin(), written.end(), name) == written.end()) written.push_back(name);
  }
  return written;
}

}  // namespace shears::engine
