#include "worker/engine/search/predictor_search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/io/compressed_tensors.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/run/prune_pass.h"
#include "worker/engine/run/staging.h"
#include "worker/engine/runtime/device.h"
#include "worker/engine/search/configuration_scorer.h"
#include "worker/engine/search/gbt_predictor.h"
#include "worker/engine/allocation/search_space.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {
namespace {

constexpr double kTrainingShare = 0.7;  // the paper's 7:3 split
constexpr int kPopulation = 40;
constexpr int kMeasuredCandidates = 3;  // the predictor's best, measured before one is chosen
// Shares of the job's progress bar.
constexpr double kSearchShare = 0.5, kUniformShare = 0.15;

struct Scored {
  Configuration config;
  double score = 0.0;  // measured perplexity, or the predicted one during the search
};

SearchOptions WithDefaults(SearchOptions search) {
  if (search.measured_configurations == 0) search.measured_configurations = kDefaultMeasuredConfigurations;
  if (search.search_budget == 0) search.search_budget = kDefaultSearchBudget;
  if (search.max_deviation == 0.0) search.max_deviation = kDefaultMaxDeviation;
  if (search.score_windows == 0) search.score_windows = kDefaultScoreWindows;
  return search;
}

// The predictor's training rows: features and log perplexity (its scale is multiplicative).
struct Rows {
  std::vector<std::vector<float>> features;
  std::vector<float> targets;
};
Rows RowsOf(const ConfigurationScorer& scorer, const std::vector<Scored>& measured, const std::vector<size_t>& which) {
  Rows rows;
  for (size_t i : which) {
    rows.features.push_back(scorer.Features(measured[i].config));
    rows.targets.push_back(static_cast<float>(std::log(measured[i].score)));
  }
  return rows;
}

// Predicted perplexities of `configs`.
absl::StatusOr<std::vector<double>> Predict(const GbtPredictor& predictor, const ConfigurationScorer& scorer,
                                            const std::vector<Configuration>& configs) {
  std::vector<std::vector<float>> features;
  for (const auto& c : configs) features.push_back(scorer.Features(c));
  SHEARS_ASSIGN_OR_RETURN(auto predicted, predictor.Predict(features));
  std::vector<double> out;
  for (float p : predicted) out.push_back(std::exp(double(p)));
  return out;
}

// Evolution under the predictor: tournaments pick parents, uniform crossover and mutation make
// children, the best `kPopulation` of parents and children survive. Returns the final
// population, best first; `evaluated` counts the configurations the predictor scored.
absl::StatusOr<std::vector<Scored>> Evolve(const SearchSpace& space, const GbtPredictor& predictor,
                                           const ConfigurationScorer& scorer, std::vector<Configuration> start,
                                           int budget, std::mt19937_64& rng, const PruneObserver& observer,
                                           int& evaluated) {
  std::vector<Scored> population;
  SHEARS_ASSIGN_OR_RETURN(auto predicted, Predict(predictor, scorer, start));
  for (size_t i = 0; i < start.size(); ++i) population.push_back({start[i], predicted[i]});
  auto by_score = [](const Scored& a, const Scored& b) { return a.score < b.score; };
  std::sort(population.begin(), population.end(), by_score);
  population.resize(std::min<size_t>(population.size(), kPopulation));
  evaluated = static_cast<int>(start.size());
  const int generations = std::max(1, (budget - evaluated) / kPopulation);
  std::uniform_int_distribution<size_t> pick(0, population.size() - 1);
  auto tournament = [&]() -> const Configuration& {
    size_t best = pick(rng);
    for (int i = 0; i < 2; ++i) best = std::min(best, pick(rng));  // sorted: a lower index is better
    return population[best].config;
  };
  for (int g = 0; g < generations && evaluated < budget; ++g) {
    std::vector<Configuration> children;
    for (int i = 0; i < kPopulation && evaluated + static_cast<int>(children.size()) < budget; ++i) {
      children.push_back(space.Mutate(space.Crossover(tournament(), tournament(), rng), 0.3, 0.25, rng));
    }
    SHEARS_ASSIGN_OR_RETURN(auto scores, Predict(predictor, scorer, children));
    evaluated += static_cast<int>(children.size());
    for (size_t i = 0; i < children.size(); ++i) population.push_back({children[i], scores[i]});
    std::stable_sort(population.begin(), population.end(), by_score);
    population.resize(kPopulation);
    if (observer.on_progress) {
      observer.on_progress("searching", kSearchShare * (0.8 + 0.2 * (g + 1) / generations),
                           absl::StrFormat("generation %d/%d: best predicted perplexity %.3f", g + 1, generations,
                                           population.front().score));
    }
  }
  return population;
}

// The options of a run of the base method at `config`'s per-linear sparsities, or its neurons
// removed per block.
PruneOptions BaseRun(const PruneOptions& options, const SearchSpace& space, const Configuration& config) {
  PruneOptions run = options;
  run.method = *options.search.base_method;
  run.search = {};
  run.linear_sparsity.clear();
  run.neurons_removed.clear();
  if (space.unit() == SearchUnit::kFfnNeurons) {
    run.neurons_removed = space.Counts(config);
  } else {
    for (const auto& [name, sparsity] : space.LinearSparsity(config)) run.linear_sparsity[name] = sparsity;
  }
  return run;
}

// The uniform configuration and `count - 1` samples around it, each pruned and scored.
absl::StatusOr<std::vector<Scored>> MeasureSamples(const SearchSpace& space, ConfigurationScorer& scorer, int count,
                                                   std::mt19937_64& rng, const PruneObserver& observer) {
  std::vector<Scored> measured;
  for (int i = 0; i < count; ++i) {
    if (observer.cancelled && observer.cancelled()) return absl::CancelledError("job cancelled");
    Configuration config = i == 0 ? space.Uniform() : space.Sample(rng);
    SHEARS_ASSIGN_OR_RETURN(double score, scorer.Score(config));
    measured.push_back({std::move(config), score});
    if (observer.on_progress) {
      observer.on_progress("searching", kSearchShare * 0.8 * (i + 1) / count,
                           absl::StrFormat("configuration %d/%d: held-out perplexity %.3f", i + 1, count, score));
    }
  }
  return measured;
}

// Trees validated on the 30% of `measured` they did not see (their rank correlation goes into
// `report`), then trained on all of it.
absl::StatusOr<std::unique_ptr<GbtPredictor>> TrainPredictor(const ConfigurationScorer& scorer,
                                                             const std::vector<Scored>& measured, uint64_t seed,
                                                             std::mt19937_64& rng, const PruneObserver& observer,
                                                             SearchReport& report) {
  std::vector<size_t> order(measured.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  const size_t training = static_cast<size_t>(std::llround(kTrainingShare * double(measured.size())));
  const std::vector<size_t> train(order.begin(), order.begin() + training), valid(order.begin() + training, order.end());
  const Rows train_rows = RowsOf(scorer, measured, train), valid_rows = RowsOf(scorer, measured, valid);
  SHEARS_ASSIGN_OR_RETURN(auto validating, GbtPredictor::Train(train_rows.features, train_rows.targets, seed));
  SHEARS_ASSIGN_OR_RETURN(auto predicted, validating->Predict(valid_rows.features));
  report.measured_configurations = static_cast<int>(measured.size());
  report.training_configurations = static_cast<int>(training);
  report.validation_rank_correlation = SpearmanCorrelation(
      std::vector<double>(predicted.begin(), predicted.end()),
      std::vector<double>(valid_rows.targets.begin(), valid_rows.targets.end()));
  if (observer.on_progress) {
    observer.on_progress("searching", kSearchShare * 0.8,
                         absl::StrFormat("predictor: rank correlation %.3f on %d validation configurations",
                                         report.validation_rank_correlation, static_cast<int>(valid.size())));
  }
  std::vector<size_t> all(measured.size());
  std::iota(all.begin(), all.end(), 0);
  const Rows all_rows = RowsOf(scorer, measured, all);
  return GbtPredictor::Train(all_rows.features, all_rows.targets, seed);
}

// The predictor's best few measured, next to the best sample: the choice rests on measurements,
// not on predictions.
absl::StatusOr<Scored> Choose(ConfigurationScorer& scorer, const std::vector<Scored>& measured,
                              const std::vector<Scored>& population) {
  Scored best = *std::min_element(measured.begin(), measured.end(),
                                  [](const Scored& a, const Scored& b) { return a.score < b.score; });
  for (int i = 0; i < kMeasuredCandidates && i < static_cast<int>(population.size()); ++i) {
    SHEARS_ASSIGN_OR_RETURN(double score, scorer.Score(population[i].config));
    if (score < best.score) best = {population[i].config, score};
  }
  return best;
}

// A configuration as each block's attention and MLP sparsity.
std::vector<BlockSparsity> PerBlock(const SearchSpace& space, const Configuration& config) {
  const Configuration realized = space.Realized(config);
  std::vector<BlockSparsity> out;
  for (size_t m = 0; m < space.modules().size(); ++m) {
    const auto& module = space.modules()[m];
    if (out.empty() || out.back().block != module.block) out.push_back({module.block, 0.0, 0.0});
    (module.mlp ? out.back().mlp : out.back().attention) = realized[m];
  }
  return out;
}

}  // namespace

absl::StatusOr<PruneReport> SearchAndPrune(const PruneOptions& options, const PruneObserver& observer) {
  const auto start_time = std::chrono::steady_clock::now();
  const SearchOptions search = WithDefaults(options.search);
  SHEARS_ASSIGN_OR_RETURN(auto model, ModelDir::Open(options.model_dir));
  if (!SparsityFormat(model->config()).empty()) {
    return absl::InvalidArgumentError("model_uri: the search starts from a dense model, not a compressed one");
  }
  SHEARS_ASSIGN_OR_RETURN(auto arch, MakeArchitecture(model->config()));
  SHEARS_RETURN_IF_ERROR(arch->CheckWeights(*model));
  SHEARS_ASSIGN_OR_RETURN(const torch::Device device, ParseDevice(options.device));
  torch::NoGradGuard no_grad;
  const SearchUnit unit = options.structure == Structure::kFfnNeurons ? SearchUnit::kFfnNeurons : SearchUnit::kWeights;
  SHEARS_ASSIGN_OR_RETURN(SearchSpace space,
                          SearchSpace::For(*arch, options.target_sparsity, search.max_deviation, unit));

  // The statistics windows are the job's calibration windows; the held-out ones are drawn after
  // them from the same stream, so the final run sees exactly the windows the scorer's
  // statistics came from, and never the ones that scored.
  JobDatasets data(*model, arch->config(), &observer);
  CalibrationOptions drawn = *options.calibration;
  drawn.num_samples += search.score_windows;
  SHEARS_ASSIGN_OR_RETURN(torch::Tensor windows, data.CalibrationWindows(drawn));
  const int64_t n = options.calibration->num_samples;
  BlockRunner runner(*model, *arch, device);
  if (observer.on_progress) observer.on_progress("searching", 0.0, "statistics of the dense model");
  SHEARS_ASSIGN_OR_RETURN(auto scorer, ConfigurationScorer::Build(runner, space, *search.base_method,
                                                                  windows.slice(0, 0, n), windows.slice(0, n)));

  std::mt19937_64 rng(options.seed);
  SHEARS_ASSIGN_OR_RETURN(std::vector<Scored> measured,
                          MeasureSamples(space, *scorer, search.measured_configurations, rng, observer));
  SearchReport report;
  SHEARS_ASSIGN_OR_RETURN(auto predictor, TrainPredictor(*scorer, measured, options.seed, rng, observer, report));
  std::vector<Configuration> start;
  for (const auto& m : measured) start.push_back(m.config);
  SHEARS_ASSIGN_OR_RETURN(auto population, Evolve(space, *predictor, *scorer, start, search.search_budget, rng,
                                                   observer, report.searched_configurations));
  SHEARS_ASSIGN_OR_RETURN(Scored best, Choose(*scorer, measured, population));
  report.uniform_score = measured.front().score;
  report.searched_score = best.score;
  report.sparsity = PerBlock(space, best.config);
  report.search_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
  scorer.reset();  // the dense blocks it holds

  double from = kSearchShare;
  if (options.evaluation) {
    PruneOptions uniform = BaseRun(options, space, space.Uniform());
    uniform.output_dir = StagingDir(options, "uniform");
    uniform.checkpoint_dir.clear();
    SHEARS_ASSIGN_OR_RETURN(PruneReport baseline, RunPruningPass(uniform, Within(observer, from, kUniformShare)));
    report.uniform_perplexity = baseline.evaluation->pruned_perplexity;
    SHEARS_RETURN_IF_ERROR(RemoveAll(uniform.output_dir));
    from += kUniformShare;
  }
  SHEARS_ASSIGN_OR_RETURN(PruneReport pruned,
                          RunPruningPass(BaseRun(options, space, best.config), Within(observer, from, 1.0 - from)));
  pruned.search = std::move(report);
  return pruned;
}

}  // namespace shears::engine
