#include "worker/engine/structured/attention_heads.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include <c10/util/accumulate.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/engine/io/nemotron_nas.h"
#include "worker/engine/methods/masks.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/structured/head_groups.h"
#include "worker/engine/structured/kv_merge.h"
#include "worker/engine/structured/neuron_scores.h"
#include "worker/engine/structured/rewritten_model.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {
namespace {

// Windows of calibration hidden states that go through an attention sublayer at a time.
constexpr int64_t kBatch = 8;

// What the calibration windows show of a block's attention, on the dense model: Σ [x, 1][x, 1]ᵀ
// of q_proj's input, and XᵀX of o_proj's (the heads' outputs side by side).
struct AttentionInputs {
  torch::Tensor query_gram, output_gram;
};

using BlockVisit =
    std::function<absl::Status(int block, const TensorMap& w, const torch::Tensor& hidden, const AttentionInputs& in)>;

// Runs the calibration windows through the dense model a block at a time, showing `visit` each
// block that has attention with its input hidden states.
absl::Status ForEachAttentionBlock(const BlockRunner& runner, const torch::Tensor& calibration,
                                   const PruneObserver& observer, const BlockVisit& visit) {
  const Architecture& arch = runner.arch();
  torch::Tensor hidden = runner.Embed(calibration);
  for (int b = 0; b < arch.num_blocks(); ++b) {
    if (observer.on_progress) {
      observer.on_progress("pruning", double(b) / arch.num_blocks(), absl::StrCat("scoring the attention of block ", b));
    }
    const TensorMap w = runner.LoadBlock(b);
    AttentionInputs in;
    const LinearInputs observe = [&](const std::string& name, const torch::Tensor& x) {
      torch::Tensor rows = x.reshape({-1, x.size(-1)});
      torch::Tensor* gram = nullptr;
      if (name == kQProj) {
        rows = torch::cat({rows, torch::ones({rows.size(0), 1}, rows.options())}, 1);
        gram = &in.query_gram;
      } else if (name == kOProj) {
        gram = &in.output_gram;
      } else {
        return;
      }
      const torch::Tensor product = rows.t().mm(rows).to(torch::kFloat64);
      *gram = gram->defined() ? *gram + product : product;
    };
    torch::Tensor next = runner.Run(b, w, hidden, &observe);
    if (arch.config().HasAttention(b)) SHEARS_RETURN_IF_ERROR(visit(b, w, hidden, in));
    hidden = std::move(next);
  }
  return absl::OkStatus();
}

// Parameters of the attention sublayer of each block (its self_attn tensors).
std::vector<int64_t> AttentionParameters(const Architecture& arch) {
  std::vector<int64_t> out;
  for (int b = 0; b < arch.num_blocks(); ++b) {
    int64_t n = 0;
    for (const auto& spec : arch.BlockTensors(b)) {
      if (absl::StartsWith(spec.name, "self_attn.")) n += c10::multiply_integers(spec.shape);
    }
    out.push_back(n);
  }
  return out;
}

// Parameters of the tensors whose rows or columns run over heads (all but o_proj's bias and the
// q/k norms): a KV group's share of them is 1 / KV heads, a KV head's share of k and v alike.
int64_t HeadParameters(const Architecture& arch, int b, bool kv_only) {
  int64_t n = 0;
  for (const auto& spec : arch.BlockTensors(b)) {
    const bool kv = spec.name == kKProj || spec.name == kVProj || spec.name == kKBias || spec.name == kVBias;
    const bool query = spec.name == kQProj || spec.name == kOProj || spec.name == kQBias;
    if (kv || (query && !kv_only)) n += c10::multiply_integers(spec.shape);
  }
  return n;
}

void RecordBlock(const Architecture& arch, int b, int64_t parameters, int64_t removed, const PruneObserver& observer,
                 PruneReport& report) {
  report.parameters_before += parameters;
  report.parameters_after += parameters - removed;
  report.layers.push_back({arch.BlockPrefix(b) + "self_attn", b, parameters, removed, -1.0, 0.0});
  if (observer.on_layer) observer.on_layer(report.layers.back());
}

// ALLOCATION_UNIFORM: the lowest-scored KV groups of every block removed with their query heads.
absl::Status RemoveGroups(const PruneOptions& options, const PruneObserver& observer, const ModelDir& model,
                          const Architecture& arch, const BlockRunner& runner, JobDatasets& data,
                          torch::Device device, const torch::Tensor& calibration, PruneReport& report) {
  const ModelConfig& c = arch.config();
  int64_t kv = 0;
  for (int b = 0; b < arch.num_blocks(); ++b) {
    if (!c.HasAttention(b)) continue;
    if (kv != 0 && c.KvHeadsOf(b) != kv) {
      return absl::InvalidArgumentError(
          "allocation: ALLOCATION_UNIFORM removes the same KV groups' worth from every block, which needs the same "
          "number of KV heads in each; this model's blocks differ (ALLOCATION_GLOBAL merges them per block)");
    }
    kv = c.KvHeadsOf(b);
  }
  if (options.width_multiple > kv) {
    return absl::InvalidArgumentError(
        absl::StrCat("width_multiple: ", options.width_multiple, " is more than the ", kv, " KV heads of a block"));
  }
  const int64_t removed = AlignedRemoval(kv, std::llround(options.target_sparsity * double(kv)), options.width_multiple);
  if (removed >= kv) {
    return absl::InvalidArgumentError(absl::StrCat("target_sparsity: ", options.target_sparsity,
                                                   " would remove every one of the ", kv, " KV heads of each block"));
  }
  // Each block's kept groups, ascending.
  std::vector<std::vector<int64_t>> kept(arch.num_blocks());
  auto choose = [&](int b, const torch::Tensor& scores) {
    const torch::Tensor pruned = LowestEntries(scores, removed);
    for (int64_t k = 0; k < kv; ++k) {
      if (!pruned[k].item<bool>()) kept[b].push_back(k);
    }
    return absl::OkStatus();
  };
  if (options.method == Method::kActivation) {
    SHEARS_RETURN_IF_ERROR(ForEachAttentionBlock(
        runner, calibration, observer, [&](int b, const TensorMap& w, const torch::Tensor&, const AttentionInputs& in) {
          return choose(b, GroupActivations(w, HeadGroupsOf(c, b), in.output_gram));
        }));
  } else {
    for (int b = 0; b < arch.num_blocks(); ++b) {
      if (!c.HasAttention(b)) continue;
      SHEARS_RETURN_IF_ERROR(choose(b, options.method == Method::kRandom ? RandomScores(options.seed, b, kv)
                                                                          : GroupMagnitudes(runner.LoadBlock(b), HeadGroupsOf(c, b))));
    }
  }

  const std::vector<int64_t> parameters = AttentionParameters(arch);
  std::vector<BlockShape> shapes = BlockShapesOf(c);
  for (int b = 0; b < arch.num_blocks(); ++b) {
    if (c.HasAttention(b)) shapes[b].kv_heads = kv - removed;
    RecordBlock(arch, b, parameters[b], c.HasAttention(b) ? HeadParameters(arch, b, false) / kv * removed : 0, observer,
                report);
  }
  const int64_t heads = c.heads / kv * (kv - removed);
  nlohmann::json config = model.config();
  config["num_attention_heads"] = heads;
  config["head_dim"] = c.head_dim;  // no longer hidden / heads
  ModelConfig cut = c;
  cut.heads = heads;
  SHEARS_ASSIGN_OR_RETURN(config, ConfigWithBlockShapes(config, cut, shapes));

  const TensorEditor edit = [&](const std::string& name) {
    const int b = arch.BlockOf(name);
    TensorEdit e{false, name};
    if (b < 0 || kept[b].empty()) return e;
    const std::string local = name.substr(arch.BlockPrefix(b).size());
    const HeadGroups g = HeadGroupsOf(c, b);
    if (local == kQProj || local == kQBias || local == kOProj) {
      e.dim = local == kOProj ? 1 : 0;
      e.index = QueryRows(g, kept[b]);
    } else if (local == kKProj || local == kVProj || local == kKBias || local == kVBias) {
      e.dim = 0;
      e.index = KvRows(g, kept[b]);
    }
    return e;
  };
  return WriteAndEvaluate(options, observer, model, edit, config,
                          absl::StrCat("keeping ", kv - removed, " of ", kv, " KV groups in every block (",
                                       heads, " query heads)"),
                          data, runner, device, calibration, report);
}

// One way of merging a block's KV heads: into `kv_heads`, with the merged projections and what
// the merge costs by the job's method.
struct MergeLevel {
  int64_t kv_heads = 0;
  MergedKv merged;
  double cost = 0.0;
};

// The relative change of `merged` against the block's own K and V weights.
double WeightChange(const TensorMap& w, const HeadGroups& g, const MergedKv& merged) {
  double change = 0.0, norm = 0.0;
  const TensorMap expanded = WithMergedKv(w, merged, g.kv_heads);
  for (const char* name : {kKProj, kVProj, kKBias, kVBias}) {
    auto it = w.find(name);
    if (it == w.end()) continue;
    change += (expanded.at(name) - it->second).square().sum().item<double>();
    norm += it->second.square().sum().item<double>();
  }
  return change / norm;
}

// The relative change of the block's attention output on its calibration input, per level.
std::vector<double> OutputChanges(const Architecture& arch, int b, const TensorMap& w, const HeadGroups& g,
                                  const std::vector<MergeLevel>& levels, const torch::Tensor& hidden) {
  std::vector<TensorMap> merged;
  for (const auto& level : levels) merged.push_back(WithMergedKv(w, level.merged, g.kv_heads));
  std::vector<double> change(levels.size(), 0.0);
  double norm = 0.0;
  for (int64_t from = 0; from < hidden.size(0); from += kBatch) {
    const torch::Tensor h = hidden.slice(0, from, from + kBatch);
    const torch::Tensor dense = arch.AttentionHalf(b, w, h, nullptr) - h;
    norm += dense.square().sum().item<double>();
    for (size_t i = 0; i < levels.size(); ++i) {
      change[i] += (arch.AttentionHalf(b, merged[i], h, nullptr) - h - dense).square().sum().item<double>();
    }
  }
  for (double& x : change) x /= norm;
  return change;
}

// ALLOCATION_GLOBAL: each block's KV heads merged into a divisor of their number, the merges
// taken in order of least cost per parameter removed while they bring the removed parameters
// nearer target_sparsity × the attention parameters.
absl::Status MergeKvHeads(const PruneOptions& options, const PruneObserver& observer, const ModelDir& model,
                          const Architecture& arch, const BlockRunner& runner, JobDatasets& data,
                          torch::Device device, const torch::Tensor& calibration, PruneReport& report) {
  const ModelConfig& c = arch.config();
  const int blocks = arch.num_blocks();
  const std::vector<int64_t> parameters = AttentionParameters(arch);
  const int64_t total = std::accumulate(parameters.begin(), parameters.end(), int64_t{0});
  // Per block, the levels below its KV heads, most KV heads first.
  std::vector<std::vector<MergeLevel>> levels(blocks);
  auto make_levels = [&](int b, const TensorMap& w, const torch::Tensor& hidden, const AttentionInputs* in) {
    const HeadGroups g = HeadGroupsOf(c, b);
    for (int64_t n = g.kv_heads - 1; n >= 1; --n) {
      if (g.kv_heads % n != 0) continue;
      MergeLevel level{n, in ? FittedKv(w, g, n, in->query_gram, c, b, calibration.size(1)) : MeanPooledKv(w, g, n)};
      switch (options.method) {
        case Method::kRandom:
          level.cost = RandomScores(options.seed, b, 1).item<double>() * double(g.kv_heads - n);
          break;
        default:
          level.cost = WeightChange(w, g, level.merged);
      }
      levels[b].push_back(std::move(level));
    }
    if (options.method == Method::kActivation && !levels[b].empty()) {
      const std::vector<double> change = OutputChanges(arch, b, w, g, levels[b], hidden);
      for (size_t i = 0; i < change.size(); ++i) levels[b][i].cost = change[i];
    }
    return absl::OkStatus();
  };
  if (calibration.defined()) {
    SHEARS_RETURN_IF_ERROR(ForEachAttentionBlock(
        runner, calibration, observer,
        [&](int b, const TensorMap& w, const torch::Tensor& hidden, const AttentionInputs& in) {
          return make_levels(b, w, hidden, &in);
        }));
  } else {
    for (int b = 0; b < blocks; ++b) {
      if (c.HasAttention(b)) SHEARS_RETURN_IF_ERROR(make_levels(b, runner.LoadBlock(b), {}, nullptr));
    }
  }

  // The parameters a block sheds merged into n KV heads: its k and v rows of the others.
  auto shed = [&](int b, int64_t n) { return HeadParameters(arch, b, true) / c.KvHeadsOf(b) * (c.KvHeadsOf(b) - n); };
  int64_t most = 0;
  for (int b = 0; b < blocks; ++b) {
    if (!levels[b].empty()) most += shed(b, levels[b].back().kv_heads);
  }
  const double budget = options.target_sparsity * double(total);
  if (budget > double(most) * (1 + 1e-9)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target_sparsity: merging KV heads removes at most ", double(most) / double(total),
        " of the attention parameters (every block down to one KV head); ALLOCATION_UNIFORM removes query heads too"));
  }
  std::vector<int> taken(blocks, -1);  // index into levels[b]; -1: the block's own heads
  int64_t removed = 0;
  auto cost_of = [&](int b, int i) { return i < 0 ? 0.0 : levels[b][i].cost; };
  auto shed_at = [&](int b, int i) { return i < 0 ? 0 : shed(b, levels[b][i].kv_heads); };
  while (true) {
    std::vector<std::pair<double, int>> steps;  // (cost per parameter, block)
    for (int b = 0; b < blocks; ++b) {
      const int next = taken[b] + 1;
      if (next >= static_cast<int>(levels[b].size())) continue;
      steps.emplace_back((cost_of(b, next) - cost_of(b, taken[b])) / double(shed_at(b, next) - shed_at(b, taken[b])), b);
    }
    std::stable_sort(steps.begin(), steps.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    bool took = false;
    for (const auto& [per_parameter, b] : steps) {
      const int64_t more = shed_at(b, taken[b] + 1) - shed_at(b, taken[b]);
      if (std::abs(double(removed + more) - budget) >= std::abs(double(removed) - budget)) continue;
      removed += more;
      ++taken[b];
      took = true;
      break;
    }
    if (!took) break;
  }

  std::vector<BlockShape> shapes = BlockShapesOf(c);
  std::vector<std::string> merges;
  for (int b = 0; b < blocks; ++b) {
    if (taken[b] >= 0) {
      shapes[b].kv_heads = levels[b][taken[b]].kv_heads;
      merges.push_back(absl::StrCat(b, ": ", c.KvHeadsOf(b), "→", shapes[b].kv_heads));
    }
    RecordBlock(arch, b, parameters[b], shed_at(b, taken[b]), observer, report);
  }
  SHEARS_ASSIGN_OR_RETURN(nlohmann::json config, ConfigWithBlockShapes(model.config(), c, shapes));
  const TensorEditor edit = [&](const std::string& name) {
    const int b = arch.BlockOf(name);
    TensorEdit e{false, name};
    if (b < 0 || taken[b] < 0) return e;
    const std::string local = name.substr(arch.BlockPrefix(b).size());
    const MergedKv& merged = levels[b][taken[b]].merged;
    if (local == kKProj) e.value = merged.k_weight;
    if (local == kVProj) e.value = merged.v_weight;
    if (local == kKBias) e.value = merged.k_bias;
    if (local == kVBias) e.value = merged.v_bias;
    return e;
  };
  return WriteAndEvaluate(options, observer, model, edit, config,
                          absl::StrCat("merging KV heads (block: before→after) ", absl::StrJoin(merges, ", ")), data,
                          runner, device, calibration, report);
}

}  // namespace

absl::StatusOr<PruneReport> PruneAttentionHeads(const PruneOptions& options, const PruneObserver& observer,
                                                const ModelDir& model, const Architecture& arch, torch::Device device) {
  const ModelConfig& c = arch.config();
  if (!arch.SplitsIntoSublayers()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "structure: STRUCTURE_ATTENTION_HEADS prunes the attention of Llama-family models (llama, mistral, qwen2, "
        "qwen3, gemma, phi3, nemotron-nas); model_type ", c.model_type, " is not one of them"));
  }
  const bool global = options.allocation == Allocation::kGlobal;
  if (global && !ExpressibleAsNemotronNas(c)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "allocation: ALLOCATION_GLOBAL writes per-block KV heads in the Nemotron-NAS layout, which expresses llama, "
        "and mistral without sliding windows, with biases on all of attention's linears or none; model_type ",
        c.model_type, " takes ALLOCATION_UNIFORM"));
  }
  JobDatasets data(model, c, &observer);
  BlockRunner runner(model, arch, device);
  PruneReport report;
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor calibration, MeasureDenseModel(options, observer, data, runner, report));
  SHEARS_RETURN_IF_ERROR((global ? MergeKvHeads : RemoveGroups)(options, observer, model, arch, runner, data, device,
                                                                 calibration, report));
  return report;
}

}  // namespace shears::engine
