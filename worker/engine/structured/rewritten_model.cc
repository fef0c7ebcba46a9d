#include "worker/engine/structured/rewritten_model.h"

#include <algorithm>
#include <map>
#include <optional>

#include <c10/util/accumulate.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/analysis/redundancy.h"
#include "worker/engine/io/model_writer.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"

namespace shears::engine {

TensorEditor KeepBlocks(const Architecture& arch, const std::vector<int>& kept,
                        std::function<bool(int block, const std::string& name)> drop) {
  std::vector<int> new_index(arch.num_blocks(), -1);
  for (size_t i = 0; i < kept.size(); ++i) new_index[kept[i]] = static_cast<int>(i);
  return [&arch, new_index, drop = std::move(drop)](const std::string& name) {
    const int b = arch.BlockOf(name);
    if (b < 0) return TensorEdit{false, name};
    const std::string local = name.substr(arch.BlockPrefix(b).size());
    if (new_index[b] < 0 || (drop && drop(b, local))) return TensorEdit{true};
    return TensorEdit{false, arch.BlockPrefix(new_index[b]) + local};
  };
}

absl::StatusOr<torch::Tensor> MeasureDenseModel(const PruneOptions& options, const PruneObserver& observer,
                                                JobDatasets& data, const BlockRunner& dense, PruneReport& report) {
  if (!options.calibration) return torch::Tensor();
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor calibration, data.CalibrationWindows(*options.calibration));
  if (observer.on_progress) {
    observer.on_progress("measuring", 0.0, "redundancy of the dense model on the calibration windows");
  }
  RecordRedundancy(dense, calibration, "dense", options.neuron_measures, observer, report);
  return calibration;
}

namespace {

// The fused linear group stored as `name` (full), if it is one.
std::optional<FusedLinear> FusedTensorNamed(const Architecture& arch, const std::string& name) {
  const int b = arch.BlockOf(name);
  if (b < 0) return std::nullopt;
  for (auto& group : arch.FusedLinears(b)) {
    if (arch.BlockPrefix(b) + group.name == name) return std::move(group);
  }
  return std::nullopt;
}

// The edit of fused tensor `stored` (full name; `read` loads it) from the edits of its parts:
// their rows cut or rewritten together, renamed with them. When a part is replaced (by low-rank
// factors), each part is written under its own name: a group is stored fused only whole.
absl::StatusOr<TensorEdit> FusedEdit(const Architecture& arch, const FusedLinear& group, const std::string& stored,
                                     const TensorEditor& edit, const std::function<torch::Tensor()>& read) {
  const int b = arch.BlockOf(stored);
  std::map<std::string, int64_t> rows;
  for (const auto& spec : arch.BlockTensors(b)) rows[spec.name] = spec.shape[0];
  std::vector<TensorEdit> parts;
  bool dropped = true, replaced = false, rewritten = false, cut_columns = false;
  for (const auto& part : group.parts) {
    parts.push_back(edit(arch.BlockPrefix(b) + part));
    dropped &= parts.back().drop;
    replaced |= !parts.back().replacements.empty();
    rewritten |= parts.back().value.defined();
    cut_columns |= parts.back().dim == 1;
    if (parts.back().drop != parts.front().drop) {
      return absl::InternalError(absl::StrCat(stored, ": a rewrite dropped some of the linears it holds"));
    }
  }
  const std::string& first = parts.front().name;
  TensorEdit out{dropped, first.substr(0, first.size() - group.parts.front().size()) + group.name};
  if (dropped) return out;
  if (!replaced && !rewritten && !cut_columns) {  // rows kept: an index into the stored rows
    std::vector<torch::Tensor> kept;
    int64_t offset = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      const int64_t n = rows.at(group.parts[i]);
      kept.push_back((parts[i].dim == 0 ? parts[i].index : torch::arange(n, torch::kInt64)) + offset);
      offset += n;
    }
    if (std::any_of(parts.begin(), parts.end(), [](const TensorEdit& e) { return e.dim == 0; })) {
      out.dim = 0;
      out.index = torch::cat(kept);
    }
    return out;
  }
  // Otherwise each part is made as its edit says, from its new value or its stored rows.
  const TensorMap split = arch.Split(b, {{group.name, read().to(torch::kFloat32)}});
  std::vector<torch::Tensor> made;
  for (size_t i = 0; i < parts.size(); ++i) {
    const TensorEdit& e = parts[i];
    for (const auto& replacement : e.replacements) out.replacements.push_back(replacement);
    if (!e.replacements.empty()) continue;
    torch::Tensor t = (e.value.defined() ? e.value.detach() : split.at(group.parts[i])).to(torch::kCPU, torch::kFloat32);
    if (e.dim >= 0) t = t.index_select(e.dim, e.index.to(torch::kCPU));
    if (replaced) {
      out.replacements.emplace_back(e.name, t);
    } else {
      if (!made.empty() && made.front().size(1) != t.size(1)) {
        return absl::InternalError(absl::StrCat(stored, ": a rewrite cut the columns of its linears differently"));
      }
      made.push_back(t);
    }
  }
  if (!replaced) out.value = torch::cat(made, 0);
  return out;
}

}  // namespace

absl::Status WriteRewrittenModel(const ModelDir& model, const Architecture& arch, const std::string& out_dir,
                                 const TensorEditor& edit, const nlohmann::json& config, PruneReport& report) {
  std::vector<OutputTensor> outputs;
  std::vector<std::pair<const ModelDir::Located*, TensorEdit>> sources;
  for (const auto& file : model.files()) {
    for (const auto& info : file->tensors()) {
      report.model_parameters_before += info.numel();
      TensorEdit e;
      const std::optional<FusedLinear> group = FusedTensorNamed(arch, info.name);
      if (group) {
        SHEARS_ASSIGN_OR_RETURN(e, FusedEdit(arch, *group, info.name, edit, [&] { return LoadTensor(*file, info); }));
      } else {
        e = edit(info.name);
      }
      for (auto& [name, t] : e.replacements) {
        report.model_parameters_after += t.numel();
        outputs.push_back({name, BaseName(file->path()), info.dtype, t.sizes().vec()});
        sources.emplace_back(nullptr, TensorEdit{false, name, -1, {}, t});
      }
      if (e.drop || !e.replacements.empty()) continue;
      // A new value (a fused tensor's parts as made, merged K/V heads) has its own shape, then cut.
      std::vector<int64_t> shape = e.value.defined() ? e.value.sizes().vec() : info.shape;
      if (e.dim >= 0) shape[e.dim] = e.index.numel();
      report.model_parameters_after += c10::multiply_integers(shape);
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
  if (calibration.defined()) RecordRedundancy(pruned, calibration, "pruned", options.neuron_measures, observer, report);
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
  SHEARS_RETURN_IF_ERROR(WriteRewrittenModel(model, dense.arch(), options.output_dir, edit, config, report));
  return EvaluateRewrittenModel(options, observer, data, dense, device, calibration, report);
}

}  // namespace shears::engine
