#include "worker/engine/run/unstructured_pass.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/analysis/redundancy.h"
#include "worker/engine/io/compressed_tensors.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/methods/linear_inputs.h"
#include "worker/engine/methods/masks.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/run/checkpoint.h"
#include "worker/engine/run/staging.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {
namespace fs = std::filesystem;

namespace {

// Each layer's reconstruction error is measured on about this many calibration tokens, spread
// over all the windows: through the Gram matrix it would cost out·in² flops a layer whatever the
// number of tokens (about 4 TFLOP a Llama-2-7B block), on the sample it costs out·in a token
// (0.2 TFLOP a 7B block), and the dense layer's outputs on it are all it keeps of the dense weights.
constexpr int64_t kReconstructionTokens = 256;

using Writers = std::map<const SafetensorsFile*, std::unique_ptr<SafetensorsWriter>>;

// One output file per input file with the same tensors in the same order, so the output has the
// input's layout and sharding. `resume` reopens the files an interrupted attempt left.
absl::StatusOr<Writers> MirrorWeightFiles(const ModelDir& model, const std::string& output_dir, bool resume) {
  Writers writers;
  for (const auto& file : model.files()) {
    std::vector<TensorDecl> decls;
    for (const auto& t : file->tensors()) decls.push_back({t.name, t.dtype, t.shape});
    const std::string path = (fs::path(output_dir) / BaseName(file->path())).string();
    SHEARS_ASSIGN_OR_RETURN(writers[file.get()], resume ? SafetensorsWriter::Resume(path, decls, file->metadata())
                                                        : SafetensorsWriter::Create(path, decls, file->metadata()));
  }
  return writers;
}

// Zeros (of either sign) in a stored tensor, from its bits: one vectorized pass. LibTorch's
// count_nonzero and (t == 0).sum() took ~0.2 s for one 7B MLP matrix, a fifth of its pruning.
template <typename Bits>
int64_t ZerosOf(const Bits* bits, int64_t n, Bits magnitude_mask) {
  int64_t zeros = 0;
  for (int64_t i = 0; i < n; ++i) zeros += (bits[i] & magnitude_mask) == 0;
  return zeros;
}

int64_t CountZeros(const torch::Tensor& stored) {
  const torch::Tensor t = stored.contiguous();
  switch (t.scalar_type()) {
    case torch::kBFloat16:
    case torch::kHalf:
      return ZerosOf(static_cast<const uint16_t*>(t.data_ptr()), t.numel(), uint16_t{0x7fff});
    case torch::kFloat32:
      return ZerosOf(static_cast<const uint32_t*>(t.data_ptr()), t.numel(), uint32_t{0x7fffffff});
    default:
      return (t == 0).sum().item<int64_t>();
  }
}

double PerplexityOf(const BlockRunner& runner, const torch::Tensor& hidden, const torch::Tensor& ids) {
  auto [nll, count] = runner.NextTokenLoss(hidden, ids);
  return std::exp(nll / static_cast<double>(count));
}

// One pruning run: what is carried from block to block, and the steps that move it along.
class PruningRun {
 public:
  // Writes the dense pruned model into `output_dir`; `fingerprint` names the inputs.
  PruningRun(const PruneOptions& options, const PruneObserver& observer, const ModelDir& model,
             const Architecture& arch, torch::Device device, std::unique_ptr<PruningMethod> method,
             const SparsityTarget& target, std::string output_dir, std::string fingerprint)
      : options_(options),
        observer_(observer),
        model_(model),
        arch_(arch),
        device_(device),
        method_(std::move(method)),
        target_(target),
        output_dir_(std::move(output_dir)),
        runner_(model, arch, device),
        fingerprint_(std::move(fingerprint)),
        data_(model, arch.config(), &observer) {}

  // Evaluation windows and output files, or the state of an interrupted attempt to resume from.
  absl::Status Start() {
    if (options_.evaluation) {
      // The dense and the pruned model see the same windows, advanced block by block side by
      // side, so both perplexities come from one pass over the checkpoint.
      SHEARS_ASSIGN_OR_RETURN(eval_ids_, data_.EvaluationWindows(*options_.evaluation));
      dense_ = runner_.Embed(eval_ids_);
      pruned_ = dense_;
    }
    if (method_->NeedsCalibration() && !options_.calibration) {
      return absl::InvalidArgumentError("this method needs calibration data");
    }
    // Calibration data also serves methods that need none: it measures their reconstruction error.
    if (options_.calibration) {
      SHEARS_ASSIGN_OR_RETURN(calibration_windows_, data_.CalibrationWindows(*options_.calibration));
      // Without evaluation nothing in the block loop reads the embedding or the LM head again:
      // embedded by a runner of its own, they are freed at once rather than held through every
      // block (1 GB in F32 at Llama-2-7B's vocabulary).
      calibration_ = options_.evaluation ? runner_.Embed(calibration_windows_)
                                         : BlockRunner(model_, arch_, device_).Embed(calibration_windows_);
    }
    SHEARS_RETURN_IF_ERROR(MakeDirectories(output_dir_));
    for (const auto& file : model_.files()) report_.files.push_back(BaseName(file->path()));
    std::optional<Checkpoint> checkpoint;
    if (!options_.checkpoint_dir.empty()) checkpoint = LoadCheckpoint(options_.checkpoint_dir, fingerprint_, device_);
    if (checkpoint) {
      auto resumed = MirrorWeightFiles(model_, output_dir_, /*resume=*/true);
      if (resumed.ok()) {
        writers_ = std::move(*resumed);
        Restore(*checkpoint);
        return absl::OkStatus();
      }
      // The output is not the one checkpointed: start over.
    }
    SHEARS_ASSIGN_OR_RETURN(writers_, MirrorWeightFiles(model_, output_dir_, /*resume=*/false));
    return absl::OkStatus();
  }

  int next_block() const { return next_block_; }
  // Starts the pace of the blocks from here.
  void StartBlocks() {
    first_block_ = next_block_;
    loop_start_ = std::chrono::steady_clock::now();
  }
  // The calibration token ids [N, T]; undefined without calibration data.
  const torch::Tensor& calibration_windows() const { return calibration_windows_; }
  // The pruned model's Block Influence of every block, on the calibration windows, measured as
  // they went through it (without neuron measures).
  const std::vector<BlockRedundancy>& pruned_influence() const { return pruned_influence_; }

  absl::Status PruneBlock(int b) {
    TensorMap block;
    {
      auto timed = Timed(observer_, "load");
      // A block that only a method which can prune stored weights reads stays in their dtype:
      // no conversion of it to F32 and back.
      const bool stored_dtype = method_->PrunesStoredDtype() && !options_.evaluation && !calibration_.defined();
      block = arch_.LoadBlock(model_, b, device_, stored_dtype);
    }
    if (options_.evaluation) {
      auto timed = Timed(observer_, "evaluate");
      dense_ = runner_.Run(b, block, dense_);
    }
    const MlpLayout mlp = arch_.Mlp();
    // The method sees the block's inputs as the blocks pruned before it produce them.
    const int64_t tokens = calibration_.defined() ? calibration_windows_.numel() : 0;
    BlockInputs inputs([&](const std::string& name) {
      InputsToGather what = method_->InputsOf(name, mlp);
      what.sample_stride = SampleStride(tokens, kReconstructionTokens);
      return what;
    });
    if (calibration_.defined()) {
      auto timed = Timed(observer_, "calibrate");
      const LinearInputs observe = [&](const std::string& name, const torch::Tensor& x) { inputs.Observe(name, x); };
      runner_.Run(b, block, calibration_, &observe);
    }
    BlockToPrune to_prune{b, {}, &block, mlp, target_};
    std::map<std::string, torch::Tensor> dense_outputs;  // on the sample, for the reconstruction error
    const std::string prefix = arch_.BlockPrefix(b);
    for (const auto& linear : arch_.BlockLinears(b)) {
      const std::string name = linear.name.substr(prefix.size());
      torch::Tensor weight = arch_.OutInView(block.at(name));
      const LinearInputStats* stats = inputs.Find(name);
      to_prune.linears.push_back({name, weight, stats});
      if (auto own = options_.linear_sparsity.find(linear.name); own != options_.linear_sparsity.end()) {
        to_prune.linears.back().target = SparsityTarget{own->second, 0, 0, /*exact_count=*/true};
      }
    }
    // The reconstruction errors are a measure; without calibration data there is only the zero
    // count, part of pruning.
    const char* const measuring = calibration_.defined() ? "measure" : "prune";
    {
      auto timed = Timed(observer_, measuring);
      for (const auto& linear : to_prune.linears) {
        if (linear.inputs != nullptr) dense_outputs[linear.name] = linear.inputs->Sample().matmul(linear.weight.t());
      }
    }
    {
      auto timed = Timed(observer_, "prune");
      SHEARS_RETURN_IF_ERROR(method_->PruneBlock(to_prune));
    }
    std::vector<PendingWrite> writes;
    SHEARS_ASSIGN_OR_RETURN(TensorMap written, StoreBlock(b, to_prune, writes));
    // The pruned model goes on with exactly what was written; a run that only prunes needs none of it.
    if (options_.evaluation || calibration_.defined()) {
      for (const auto& [name, tensor] : written) block[name] = tensor.to(device_, torch::kFloat32);
    }
    {
      auto timed = Timed(observer_, measuring);
      for (const auto& linear : to_prune.linears) {
        const std::string full_name = prefix + linear.name;
        const torch::Tensor& stored = written.at(linear.name);
        LayerReport report{full_name, b, stored.numel(), CountZeros(stored)};
        const torch::Tensor& weight = block.at(linear.name);
        if (linear.inputs != nullptr) {
          const torch::Tensor pruned = linear.inputs->Sample().matmul(arch_.OutInView(weight).t());
          report.reconstruction_error = ReconstructionError(dense_outputs.at(linear.name), pruned);
        }
        report.seconds = linear.seconds;
        Record(report);
        if (observer_.on_layer) observer_.on_layer(report_.layers.back());
      }
    }
    if (options_.evaluation) {
      auto timed = Timed(observer_, "evaluate");
      pruned_ = runner_.Run(b, block, pruned_);
    }
    if (calibration_.defined()) {
      torch::Tensor next;
      // The calibration windows go on through the pruned model: its Block Influence is here,
      // without the pass over the pruned model that the neuron measures need.
      if (!options_.neuron_measures) {
        auto timed = Timed(observer_, "measure");
        pruned_influence_.push_back(RunMeasured(runner_, b, block, calibration_, next));
      } else {
        auto timed = Timed(observer_, "calibrate");
        next = runner_.Run(b, block, calibration_);
      }
      calibration_ = next;
    }
    next_block_ = b + 1;
    SHEARS_RETURN_IF_ERROR(Persist(std::move(writes)));
    ReportPace();
    return absl::OkStatus();
  }

  absl::Status WaitForPersist() {
    if (!persisting_.valid()) return absl::OkStatus();
    return persisting_.get();
  }

  // Perplexities, the tensors no method touched, and the files that complete the directory.
  absl::StatusOr<PruneReport> Finish() {
    {
      auto timed = Timed(observer_, "write");
      SHEARS_RETURN_IF_ERROR(WaitForPersist());
    }
    if (options_.evaluation) {
      auto timed = Timed(observer_, "evaluate");
      Progress("evaluating", "perplexity of the dense and the pruned model");
      EvaluationReport eval;
      eval.windows = eval_ids_.size(0);
      eval.seq_len = eval_ids_.size(1);
      eval.predicted_tokens = eval.windows * (eval.seq_len - 1);
      eval.dense_perplexity = PerplexityOf(runner_, dense_, eval_ids_);
      eval.pruned_perplexity = PerplexityOf(runner_, pruned_, eval_ids_);
      report_.evaluation = eval;
    }
    auto timed = Timed(observer_, "write");
    Progress("writing", "copying the unpruned tensors");
    for (const auto& file : model_.files()) {
      for (const auto& info : file->tensors()) {
        if (pruned_names_.count(info.name)) continue;
        SHEARS_RETURN_IF_ERROR(writers_[file.get()]->Write(info.name, file->Data(info)));
        file->Release(info);
      }
      SHEARS_RETURN_IF_ERROR(writers_[file.get()]->Close());
      report_.digests[BaseName(file->path())] = writers_[file.get()]->sha256();
    }
    for (const char* name : {kConfigFile, kIndexFile}) {
      const fs::path from = fs::path(model_.dir()) / name;
      if (!fs::exists(from)) continue;
      SHEARS_RETURN_IF_ERROR(CopyFileAtomically(from.string(), (fs::path(output_dir_) / name).string()));
      report_.files.push_back(name);
    }
    SHEARS_ASSIGN_OR_RETURN(auto side_files, CopySideFiles(model_.dir(), output_dir_));
    report_.files.insert(report_.files.end(), side_files.begin(), side_files.end());
    return report_;
  }

 private:
  // A tensor's bytes for the file that holds it, and the tensor that holds the bytes.
  struct PendingWrite {
    SafetensorsWriter* writer;
    std::string name;
    torch::Tensor holder;
    absl::Span<const uint8_t> bytes;
  };

  // The block's pruned linears as stored (fused linears stacked back, in the stored dtype), into
  // `writes`; returns them split into the linears again, on the CPU in the stored dtype.
  absl::StatusOr<TensorMap> StoreBlock(int b, const BlockToPrune& to_prune, std::vector<PendingWrite>& writes) {
    auto timed = Timed(observer_, "write");
    const std::string prefix = arch_.BlockPrefix(b);
    TensorMap pruned, written;
    for (const auto& linear : to_prune.linears) pruned[linear.name] = to_prune.tensors->at(linear.name);
    for (const auto& [name, tensor] : arch_.Fuse(b, pruned)) {
      const auto* at = model_.Find(prefix + name);
      PendingWrite write{writers_.at(at->file).get(), prefix + name, {}, {}};
      write.bytes = TensorBytes(tensor.to(ToScalarType(at->info->dtype)), write.holder);
      written[name] = write.holder;
      writes.push_back(std::move(write));
    }
    return arch_.Split(b, written);
  }

  // Writes the block and, with a checkpoint directory, makes it durable and checkpoints it, on a
  // thread of its own while the next block is pruned: a 7B-shaped block's ~400 MB wait for a
  // disk that takes ~280 MB/s, and syncing them for the kernel to write them. One block at a
  // time, in block order; a block that failed fails the run at the next one.
  absl::Status Persist(std::vector<PendingWrite> writes) {
    auto timed = Timed(observer_, "write");
    SHEARS_RETURN_IF_ERROR(WaitForPersist());
    std::optional<Checkpoint> done;
    if (!options_.checkpoint_dir.empty()) {
      done = Checkpoint{next_block_, report_.layers, {}, pruned_influence_};
      // The activations are replaced, never changed in place, by the next block: holding them is
      // a snapshot.
      if (options_.evaluation) done->activations = {{"dense", dense_}, {"pruned", pruned_}};
      if (calibration_.defined()) done->activations["calibration"] = calibration_;
    }
    persisting_ = std::async(std::launch::async, [this, writes = std::move(writes), done = std::move(done)] {
      return WriteAndCheckpoint(writes, done);
    });
    return absl::OkStatus();
  }

  absl::Status WriteAndCheckpoint(const std::vector<PendingWrite>& writes, const std::optional<Checkpoint>& done) {
    for (const auto& w : writes) SHEARS_RETURN_IF_ERROR(w.writer->Write(w.name, w.bytes));
    if (!done) return absl::OkStatus();
    // The block's bytes are durable before the checkpoint that says they are there.
    for (auto& [file, writer] : writers_) SHEARS_RETURN_IF_ERROR(writer->Sync());
    return SaveCheckpoint(options_.checkpoint_dir, fingerprint_, *done);
  }

  // The blocks done, and the rest at the pace of the blocks this attempt pruned (as a plain
  // progress message to an observer that does not listen for the pace).
  void ReportPace() {
    if (!observer_.on_block) return Progress("pruning", absl::StrCat("block ", next_block_, "/", arch_.num_blocks()));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_start_).count();
    BlockProgress pace;
    pace.blocks_done = next_block_;
    pace.blocks = arch_.num_blocks();
    pace.seconds_per_block = seconds / std::max(1, next_block_ - first_block_);
    pace.seconds_left = pace.seconds_per_block * (pace.blocks - pace.blocks_done);
    if (observer_.clock != nullptr) pace.stages = observer_.clock->times();
    observer_.on_block(pace);
  }

  void Progress(const std::string& stage, const std::string& message) {
    if (observer_.on_progress) observer_.on_progress(stage, double(next_block_) / arch_.num_blocks(), message);
  }

  void Record(const LayerReport& layer) {
    report_.parameters_before += layer.parameters;
    report_.parameters_after += layer.parameters - layer.zeros;
    report_.layers.push_back(layer);
    pruned_names_.insert(arch_.StoredNameOf(layer.name));
  }

  void Restore(const Checkpoint& checkpoint) {
    for (const auto& layer : checkpoint.layers) {
      Record(layer);
      const std::string stored = arch_.StoredNameOf(layer.name);
      writers_[model_.Find(stored)->file]->MarkWritten(stored);
    }
    if (options_.evaluation) {
      dense_ = checkpoint.activations.at("dense");
      pruned_ = checkpoint.activations.at("pruned");
    }
    if (calibration_.defined()) calibration_ = checkpoint.activations.at("calibration");
    pruned_influence_ = checkpoint.influences;
    next_block_ = checkpoint.blocks_done;
    Progress("pruning", absl::StrCat("resuming after block ", next_block_, "/", arch_.num_blocks()));
  }

  const PruneOptions& options_;
  const PruneObserver& observer_;
  const ModelDir& model_;
  const Architecture& arch_;
  const torch::Device device_;
  std::unique_ptr<PruningMethod> method_;
  const SparsityTarget target_;
  const std::string output_dir_;
  BlockRunner runner_;
  const std::string fingerprint_;
  JobDatasets data_;
  Writers writers_;
  PruneReport report_;
  std::set<std::string> pruned_names_;
  torch::Tensor eval_ids_, dense_, pruned_;
  torch::Tensor calibration_windows_;
  torch::Tensor calibration_;  // hidden states of the calibration windows, when the method needs them
  std::vector<BlockRedundancy> pruned_influence_;
  // The last block's writing and checkpoint, running. Declared after everything it uses, so that
  // a run that ends early waits for it before those go.
  std::future<absl::Status> persisting_;
  int next_block_ = 0;
  int first_block_ = 0;
  std::chrono::steady_clock::time_point loop_start_;
};

// What every linear is pruned to, unless it has a sparsity of its own (options.linear_sparsity).
// The job rules have checked the numbers.
SparsityTarget TargetOf(const PruneOptions& options) {
  if (options.structure == Structure::kNM) {
    return SparsityTarget{1.0 - double(options.n) / double(options.m), options.n, options.m};
  }
  return SparsityTarget{options.target_sparsity};
}

// An N:M target tiles every linear's inputs: a rule of the model, not of the job.
absl::Status CheckTarget(const Architecture& arch, const SparsityTarget& target) {
  if (!target.n_m()) return absl::OkStatus();
  for (const auto& linear : arch.BlockLinears(0)) {
    const int64_t inputs = linear.shape[arch.LinearsStoredTransposed() ? 0 : 1];
    if (inputs % target.m != 0) {
      return absl::InvalidArgumentError(absl::StrCat("n_m: M=", target.m, " does not divide the ", inputs,
                                                     " inputs of ", linear.name));
    }
  }
  return absl::OkStatus();
}

std::string StructureName(const SparsityTarget& target) {
  return target.n_m() ? absl::StrCat(target.n, ":", target.m) : "unstructured";
}

// Stores the dense pruned model of `dense_dir` in the compressed layout into the output directory.
absl::Status Compress(const PruneOptions& options, const Architecture& arch, const std::string& dense_dir,
                      const SparsityTarget& target, PruneReport& report) {
  std::set<std::string> pruned;  // the stored tensors
  for (const auto& layer : report.layers) pruned.insert(arch.StoredNameOf(layer.name));
  const char* format =
      options.format == OutputFormat::kSparse24Bitmask ? kSparse24BitmaskFormat : kSparseBitmaskFormat;
  SHEARS_ASSIGN_OR_RETURN(auto written, CompressModel(dense_dir, options.output_dir, pruned,
                                                      {format, StructureName(target), report.achieved_sparsity()}));
  std::set<std::string> files(written.begin(), written.end());
  for (const auto& name : report.files) {
    if (files.count(name)) continue;
    SHEARS_RETURN_IF_ERROR(CopyFileAtomically((fs::path(dense_dir) / name).string(),
                                              (fs::path(options.output_dir) / name).string()));
    files.insert(name);
  }
  report.files.assign(files.begin(), files.end());
  report.digests.clear();  // they were the dense files'
  return RemoveAll(dense_dir);
}

}  // namespace

absl::StatusOr<PruneReport> PruneBlockByBlock(const PruneOptions& options, const PruneObserver& observer,
                                              const ModelDir& model, const Architecture& arch, torch::Device device,
                                              std::unique_ptr<PruningMethod> method, const std::string& fingerprint) {
  const SparsityTarget target = TargetOf(options);
  SHEARS_RETURN_IF_ERROR(CheckTarget(arch, target));
  const bool compressed = options.format != OutputFormat::kDenseSafetensors;
  const std::string dense_dir = compressed ? StagingDir(options, "dense") : options.output_dir;
  PruningRun run(options, observer, model, arch, device, std::move(method), target, dense_dir, fingerprint);
  SHEARS_RETURN_IF_ERROR(run.Start());
  run.StartBlocks();
  for (int b = run.next_block(); b < arch.num_blocks(); ++b) {
    if (observer.cancelled && observer.cancelled()) return absl::CancelledError("job cancelled");
    SHEARS_RETURN_IF_ERROR(run.PruneBlock(b));
  }
  SHEARS_ASSIGN_OR_RETURN(PruneReport report, run.Finish());
  if (options.calibration) {
    // Block Influence of the dense model, and of the pruned one when it was not measured along the way.
    auto timed = Timed(observer, "measure");
    if (observer.on_progress) observer.on_progress("measuring", 1.0, "Block Influence of the dense and the pruned model");
    const torch::Tensor& windows = run.calibration_windows();
    RecordRedundancy(BlockRunner(model, arch, device), windows, "dense", options.neuron_measures, observer, report);
    if (options.neuron_measures) {
      SHEARS_ASSIGN_OR_RETURN(auto pruned, ModelDir::Open(dense_dir));
      RecordRedundancy(BlockRunner(*pruned, arch, device), windows, "pruned", true, observer, report);
    } else {
      report.redundancy.push_back({"pruned", run.pruned_influence(), {}});
      if (observer.on_redundancy) observer.on_redundancy(report.redundancy.back());
    }
  }
  if (compressed) {
    auto timed = Timed(observer, "write");
    if (observer.on_progress) observer.on_progress("writing", 1.0, "storing the sparse weights compressed");
    SHEARS_RETURN_IF_ERROR(Compress(options, arch, dense_dir, target, report));
  }
  return report;
}

}  // namespace shears::engine
