#include "worker/engine/structured/low_rank.h"

#include <cmath>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/methods/linear_inputs.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/structured/flop.h"
#include "worker/engine/structured/rewritten_model.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {
namespace {

struct Matrix {
  std::string name;  // full weight name
  int block = 0;
  int64_t rows = 0, columns = 0;  // nn.Linear's [out, in]
  int64_t size() const { return rows * columns; }
  bool FactorsSmaller(int64_t rank) const { return rank * (rows + columns) < size(); }
};

std::vector<Matrix> Matrices(const Architecture& arch) {
  std::vector<Matrix> out;
  const bool transposed = arch.LinearsStoredTransposed();
  for (int b = 0; b < arch.num_blocks(); ++b) {
    for (const auto& linear : arch.BlockLinears(b)) {
      out.push_back({linear.name, b, linear.shape[transposed ? 1 : 0], linear.shape[transposed ? 0 : 1]});
    }
  }
  return out;
}

// The SVD of W·L with L Lᵀ the Gram matrix of the inputs: ‖W X‖² = ‖W L‖² component by component.
struct WhitenedSvd {
  torch::Tensor u, s, vh, chol;
};

WhitenedSvd Whiten(const torch::Tensor& weight, const torch::Tensor& gram) {
  const auto g = gram.to(torch::kFloat64);
  const int64_t n = g.size(0);
  // A small ridge keeps the Cholesky factor invertible when some inputs never vary.
  const double ridge = 1e-6 * g.diagonal().mean().item<double>() + 1e-12;
  auto chol = torch::linalg_cholesky(g + ridge * torch::eye(n, g.options()));
  auto [u, s, vh] = torch::linalg_svd(weight.to(torch::kFloat64).matmul(chol), /*full_matrices=*/false);
  return {u, s, vh, chol};
}

Spectrum SpectrumOf(const WhitenedSvd& svd, const Matrix& m) {
  auto energy = svd.s.square();
  auto kept = torch::cat({torch::zeros({1}, energy.options()), energy.cumsum(0)});
  return {(1.0 - kept / energy.sum().clamp_min(1e-300)).clamp_min(0.0).cpu(), m.rows, m.columns};
}

// The leading `rank` components, mapped back from the whitened space: V = Vh_r · L⁻¹.
LowRankFactors Truncate(const WhitenedSvd& svd, int64_t rank) {
  auto u = svd.u.slice(1, 0, rank) * svd.s.slice(0, 0, rank);
  auto v = torch::linalg_solve_triangular(svd.chol, svd.vh.slice(0, 0, rank), /*upper=*/false, /*left=*/false);
  return {u.to(torch::kFloat32), v.to(torch::kFloat32)};
}

// The factors of the matrices that SVD ranks leave factored, and their relative errors.
struct SvdChoice {
  std::map<std::string, LowRankFactors> factors;
  std::map<std::string, double> errors;
};

// Whitens every linear by its inputs on the calibration windows (through the dense model, block
// by block), allocates the ranks and truncates.
absl::StatusOr<SvdChoice> ChooseBySvd(const std::vector<Matrix>& matrices, const BlockRunner& runner,
                                      const torch::Tensor& calibration, int64_t budget, const PruneObserver& observer) {
  const Architecture& arch = runner.arch();
  std::vector<WhitenedSvd> svds;
  std::vector<Spectrum> spectra;
  torch::Tensor hidden = runner.Embed(calibration);
  size_t next = 0;
  for (int b = 0; b < arch.num_blocks(); ++b) {
    BlockInputs inputs([](const std::string&) { return InputsToGather{}; });
    const LinearInputs observe = [&](const std::string& name, const torch::Tensor& x) { inputs.Observe(name, x); };
    const TensorMap block = runner.LoadBlock(b);
    hidden = runner.Run(b, block, hidden, &observe);
    for (; next < matrices.size() && matrices[next].block == b; ++next) {
      const std::string name = matrices[next].name.substr(arch.BlockPrefix(b).size());
      const torch::Tensor& stored = block.at(name);
      svds.push_back(Whiten(arch.LinearsStoredTransposed() ? stored.t() : stored, inputs.Find(name)->gram()));
      spectra.push_back(SpectrumOf(svds.back(), matrices[next]));
    }
    if (observer.on_progress) {
      observer.on_progress("pruning", 0.5 * (b + 1) / arch.num_blocks(), absl::StrCat("factorized block ", b));
    }
  }
  SHEARS_ASSIGN_OR_RETURN(std::vector<int64_t> ranks, AllocateRanks(spectra, budget));
  SvdChoice choice;
  for (size_t j = 0; j < matrices.size(); ++j) {
    if (ranks[j] == 0) continue;
    choice.factors[matrices[j].name] = Truncate(svds[j], ranks[j]);
    choice.errors[matrices[j].name] = spectra[j].tail[ranks[j]].item<double>();
  }
  return choice;
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> AllocateRanks(const std::vector<Spectrum>& spectra, int64_t budget) {
  // At multiplier λ each matrix takes the option of least error + λ·parameters; the parameters
  // fall as λ rises, so λ is bisected to the smallest that fits the budget.
  auto choose = [&](double lambda, std::vector<int64_t>* ranks) {
    int64_t total = 0;
    for (size_t j = 0; j < spectra.size(); ++j) {
      const Spectrum& sp = spectra[j];
      const int64_t per_rank = sp.rows + sp.columns, whole = sp.rows * sp.columns;
      const double* tail = sp.tail.data_ptr<double>();
      int64_t best_rank = 0;
      double best = lambda * double(whole);
      for (int64_t r = 1; r < sp.tail.numel() && r * per_rank < whole; ++r) {
        const double value = tail[r] + lambda * double(r * per_rank);
        if (value < best) best = value, best_rank = r;
      }
      if (ranks != nullptr) (*ranks)[j] = best_rank;
      total += best_rank == 0 ? whole : best_rank * per_rank;
    }
    return total;
  };
  std::vector<int64_t> ranks(spectra.size(), 0);
  if (choose(0.0, nullptr) <= budget) {
    choose(0.0, &ranks);
    return ranks;
  }
  double low = 1e-30, high = 1e-9;
  while (choose(high, nullptr) > budget) {
    high *= 4;
    if (high > 1e12) {
      return absl::InvalidArgumentError(
          "target_sparsity: even rank 1 in every factorizable matrix keeps more parameters than the target allows");
    }
  }
  for (int i = 0; i < 200 && high / low > 1.0 + 1e-12; ++i) {
    const double middle = std::sqrt(low * high);
    (choose(middle, nullptr) > budget ? low : high) = middle;
  }
  int64_t total = choose(high, &ranks);
  // The multiplier's options jump (a matrix leaving whole storage frees many parameters at once):
  // give what is left of the budget back, one component at a time where it removes most error.
  while (true) {
    size_t best = spectra.size();
    double best_gain = 0.0;
    for (size_t j = 0; j < spectra.size(); ++j) {
      const Spectrum& sp = spectra[j];
      const int64_t r = ranks[j], per_rank = sp.rows + sp.columns;
      if (r == 0 || total + per_rank > budget || (r + 1) * per_rank >= sp.rows * sp.columns) continue;
      const double gain = (sp.tail[r].item<double>() - sp.tail[r + 1].item<double>()) / double(per_rank);
      if (gain > best_gain) best = j, best_gain = gain;
    }
    if (best == spectra.size()) return ranks;
    ++ranks[best];
    total += spectra[best].rows + spectra[best].columns;
  }
}

absl::StatusOr<PruneReport> PruneLowRank(const PruneOptions& options, const PruneObserver& observer,
                                         const ModelDir& model, const Architecture& arch, torch::Device device) {
  const std::vector<Matrix> matrices = Matrices(arch);
  BlockRunner runner(model, arch, device);
  JobDatasets data(model, arch.config(), &observer);
  PruneReport report;
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor calibration, MeasureDenseModel(options, observer, data, runner, report));
  int64_t dense = 0;
  for (const auto& m : matrices) dense += m.size();
  const auto budget = static_cast<int64_t>(std::llround((1.0 - options.target_sparsity) * double(dense)));

  std::map<std::string, LowRankFactors> factors;
  std::map<std::string, double> errors;
  std::optional<ModelWeights> tuned;
  if (options.low_rank.algorithm == LowRankAlgorithm::kSvd) {
    if (!calibration.defined()) {
      return absl::InvalidArgumentError("calibration: activation-aware SVD needs calibration data");
    }
    SHEARS_ASSIGN_OR_RETURN(SvdChoice choice, ChooseBySvd(matrices, runner, calibration, budget, observer));
    factors = std::move(choice.factors);
    errors = std::move(choice.errors);
  } else {
    SHEARS_ASSIGN_OR_RETURN(torch::Tensor ids, data.FineTuneIds(*options.fine_tune));
    SHEARS_ASSIGN_OR_RETURN(FlopResult flop, TrainFlop(options, observer, model, arch, device, ids));
    tuned = std::move(flop.weights);
    factors = std::move(flop.factors);
  }

  // Factors where they are smaller than the weight, else the product written whole.
  nlohmann::json config = model.config();
  nlohmann::json ranks = config.value(kLowRankKey, nlohmann::json::object());
  std::map<std::string, int64_t> stored;
  for (const auto& m : matrices) {
    auto f = factors.find(m.name);
    const int64_t rank = f == factors.end() ? 0 : f->second.u.size(1);
    const bool factored = rank > 0 && m.FactorsSmaller(rank) && !options.low_rank.dense_output;
    stored[m.name] = factored ? rank * (m.rows + m.columns) : m.size();
    if (factored) ranks[m.name] = rank;
    auto error = errors.find(m.name);
    report.layers.push_back({m.name, m.block, m.size(), m.size() - stored[m.name],
                             error == errors.end() ? -1.0 : error->second, 0.0});
    report.parameters_before += m.size();
    report.parameters_after += stored[m.name];
    if (observer.on_layer) observer.on_layer(report.layers.back());
  }
  config.erase(kLowRankKey);
  if (!ranks.empty()) config[kLowRankKey] = ranks;
  const bool transposed = arch.LinearsStoredTransposed();
  const TensorEditor edit = [&](const std::string& name) {
    TensorEdit e{false, name};
    if (tuned) e.value = TensorByName(*tuned, arch, name);
    auto f = factors.find(name);
    if (f == factors.end()) return e;
    if (ranks.contains(name)) {
      const FactorNames names = FactorNamesOf(name);
      e.replacements = {{names.u, f->second.u}, {names.v, f->second.v}};
    } else {
      auto product = f->second.u.matmul(f->second.v);
      e.value = transposed ? product.t() : product;
    }
    return e;
  };
  SHEARS_RETURN_IF_ERROR(WriteAndEvaluate(options, observer, model, edit, config, "writing the factors", data, runner,
                                          device, calibration, report));
  return report;
}

}  // namespace shears::engine
