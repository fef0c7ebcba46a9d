#include "worker/engine/structured/rewritten_model.h"

#include "common/status_macros.h"
#include "worker/engine/analysis/redundancy.h"
#include "worker/engine/io/model_writer.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"

namespace shears::engine {

absl::StatusOr<torch::Tensor> MeasureDenseModel(const PruneOptions& options, const PruneObserver& observer,
                                                JobDatasets& data, const BlockRunner& dense, PruneReport& report) {
  if (!options.calibration) return torch::Tensor();
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor calibration, data.CalibrationWindows(*options.calibration));
  if (observer.on_progress) {
    observer.on_progress("measuring", 0.0, "redundancy of the dense model on the calibration windows");
  }
  RecordRedundancy(dense, calibration, "dense", observer, report);
  return calibration;
}

absl::Status WriteRewrittenModel(const ModelDir& model, const std::string& out_dir, const TensorEditor& edit,
                                 const nlohmann::json& config, PruneReport& report) {
  std::vector<OutputTensor> outputs;
  std::vector<std::pair<const ModelDir::Located*, TensorEdit>> sources;
  for (const auto& file : model.files()) {
    for (const auto& info : file->tensors()) {
      report.model_parameters_before += info.numel();
      TensorEdit e = edit(info.name);
      for (auto& [name, t] : e.replacements) {
        report.model_parameters_after += t.numel();
        outputs.push_back({name, BaseName(file->path()), info.dtype, t.sizes().vec()});
        sources.emplace_back(nullptr, TensorEdit{false, name, -1, {}, t});
      }
      if (e.drop || !e.replacements.empty()) continue;
      std::vector<int64_t> shape = info.shape;
      if (e.dim >= 0) shape[e.dim] = e.index.numel();
      int64_t numel = 1;
      for (int64_t size : shape) numel *= size;
      report.model_parameters_after += numel;
      outputs.push_back({e.name, BaseName(file->path()), info.dtype, shape});
      sources.emplace_back(model.Find(info.name), std::move(e));
    }
  }
  SHEARS_ASSIGN_OR_RETURN(auto writer, ModelWriter::Create(model, out_dir, outputs));
  for (const auto& [at, e] : sources) {
    torch::Tensor t = e.value.defined() ? e.value.detach() : LoadTensor(*at->file, *at->info);
    if (e.dim >= 0) t = t.index_select(e.dim, e.index);
    SHEARS_RETURN_IF_ERROR(writer->Write(e.name, t));
  }
  SHEARS_ASSIGN_OR_RETURN(report.files, writer->Finish(config));
  return absl::OkStatus();
}

absl::Status EvaluateRewrittenModel(const PruneOptions& options, const PruneObserver& observer, JobDatasets& data,
                                    const BlockRunner& dense, torch::Device device, const torch::Tensor& calibration,
                                    PruneReport& report) {
  SHEARS_ASSIGN_OR_RETURN(auto model, ModelDir::Open(options.output_dir));
  SHEARS_ASSIGN_OR_RETURN(auto arch, MakeArchitecture(model->config()));
  SHEARS_RETURN_IF_ERROR(arch->CheckWeights(*model));
  BlockRunner pruned(*model, *arch, device);
  if (calibration.defined()) RecordRedundancy(pruned, calibration, "pruned", observer, report);
  if (options.evaluation) {
    SHEARS_ASSIGN_OR_RETURN(torch::Tensor ids, data.EvaluationWindows(*options.evaluation));
    report.evaluation = EvaluationReport{ids.size(0), ids.size(1), ids.size(0) * (ids.size(1) - 1),
                                         Perplexity(dense, ids), Perplexity(pruned, ids)};
  }
  return absl::OkStatus();
}

absl::Status WriteAndEvaluate(const PruneOptions& options, const PruneObserver& observer, const ModelDir& model,
                              const TensorEditor& edit, const nlohmann::json& config, const std::string& what,
                              JobDatasets& data, const BlockRunner& dense, torch::Device device,
                              const torch::Tensor& calibration, PruneReport& report) {
  if (observer.on_progress) observer.on_progress("writing", 0.5, what);
  SHEARS_RETURN_IF_ERROR(WriteRewrittenModel(model, options.output_dir, edit, config, report));
  return EvaluateRewrittenModel(options, observer, data, dense, device, calibration, report);
}

}  // namespace shears::engine
