#include "worker/engine/search/predictor_search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "worker/engine/allocation/owl.h"
#include "worker/engine/allocation/search_space.h"
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
#include "worker/engine/search/profiles.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {
namespace {

constexpr double kTrainingShare = 0.7;  // the paper's 7:3 split
constexpr int kPopulation = 40;
// The measured configurations: this share sampled first, the rest measured in rounds, each the
// predictor's best after it learned from everything measured before.
constexpr double kSampledShare = 0.6;
constexpr int kRounds = 2;
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

bool SameConfiguration(const Configuration& a, const Configuration& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::abs(a[i] - b[i]) > 1e-6) return false;
  }
  return true;
}

// One search: measured configurations, the predictor learning from them, and the evolution it
// guides. Scores are perplexities on the held-out windows.
class Search {
 public:
  Search(const SearchSpace& space, ConfigurationScorer& scorer, std::vector<Profile> profiles, const SearchOptions& options,
         uint64_t seed, const PruneObserver& observer)
      : space_(space),
        scorer_(scorer),
        profiles_(std::move(profiles)),
        options_(options),
        seed_(seed),
        rng_(seed),
        observer_(observer) {}

  // What the predictor learns from: the scorer's features (each module's sparsity and its
  // reconstruction error times its block's influence, and their sum) and the configuration's
  // place along the profiles.
  std::vector<float> Features(const Configuration& config) const {
    std::vector<float> features = scorer_.Features(config);
    const auto along = ProfileCoordinates(space_, profiles_, config, options_.max_deviation);
    features.insert(features.end(), along.begin(), along.end());
    return features;
  }

  // `anchors` (the uniform configuration first), then samples up to the first share of the
  // measured budget: half around the target module by module (the paper's sampling), half
  // along the profiles.
  absl::Status MeasureSamples(const std::vector<Configuration>& anchors) {
    const int count = std::max(static_cast<int>(anchors.size()) + 2,
                               static_cast<int>(std::llround(kSampledShare * options_.measured_configurations)));
    for (int i = 0; i < count; ++i) {
      Configuration config;
      if (i < static_cast<int>(anchors.size())) {
        config = anchors[i];
      } else {
        config = i % 2 == 0 ? space_.Sample(rng_) : SampleAlongProfiles(space_, profiles_, options_.max_deviation, rng_);
      }
      SHEARS_RETURN_IF_ERROR(Measure(std::move(config)));
    }
    return absl::OkStatus();
  }

  // Trees validated on the 30% of the measured configurations they did not see: Spearman's rank
  // correlation between predicted and measured scores.
  absl::StatusOr<double> Validate(int& training) {
    std::vector<size_t> order(measured_.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng_);
    training = static_cast<int>(std::llround(kTrainingShare * double(measured_.size())));
    SHEARS_ASSIGN_OR_RETURN(auto trees, Train({order.begin(), order.begin() + training}));
    std::vector<Configuration> held;
    std::vector<double> measured;
    for (auto i = order.begin() + training; i != order.end(); ++i) {
      held.push_back(measured_[*i].config);
      measured.push_back(measured_[*i].score);
    }
    SHEARS_ASSIGN_OR_RETURN(auto predicted, Predict(*trees, held, /*searching=*/false));
    const double correlation = SpearmanCorrelation(predicted, measured);
    if (observer_.on_progress) {
      observer_.on_progress("searching", Progress(),
                            absl::StrFormat("predictor: rank correlation %.3f on %d validation configurations",
                                            correlation, static_cast<int>(held.size())));
    }
    return correlation;
  }

  // The rounds: trees trained on everything measured so far guide an evolution from it, and the
  // best new configurations they propose are measured.
  absl::Status Refine() {
    const int left = options_.measured_configurations - static_cast<int>(measured_.size());
    for (int round = 0; round < kRounds; ++round) {
      const int count = left / kRounds + (round < left % kRounds ? 1 : 0);
      std::vector<size_t> all(measured_.size());
      std::iota(all.begin(), all.end(), 0);
      SHEARS_ASSIGN_OR_RETURN(auto trees, Train(all));
      SHEARS_ASSIGN_OR_RETURN(auto population, Evolve(*trees, options_.search_budget / kRounds, round));
      int taken = 0;
      for (const Scored& candidate : population) {
        if (taken == count) break;
        const bool known = std::any_of(measured_.begin(), measured_.end(),
                                       [&](const Scored& m) { return SameConfiguration(m.config, candidate.config); });
        if (known) continue;
        SHEARS_RETURN_IF_ERROR(Measure(candidate.config));
        ++taken;
      }
    }
    return absl::OkStatus();
  }

  const std::vector<Scored>& measured() const { return measured_; }
  const Scored& Best() const {
    return *std::min_element(measured_.begin(), measured_.end(),
                             [](const Scored& a, const Scored& b) { return a.score < b.score; });
  }
  int predicted() const { return predicted_; }

 private:
  absl::Status Measure(Configuration config) {
    if (observer_.cancelled && observer_.cancelled()) return absl::CancelledError("job cancelled");
    SHEARS_ASSIGN_OR_RETURN(double score, scorer_.Score(config));
    measured_.push_back({std::move(config), score});
    if (observer_.on_progress) {
      observer_.on_progress("searching", Progress(),
                            absl::StrFormat("configuration %d/%d: held-out perplexity %.3f",
                                            static_cast<int>(measured_.size()), options_.measured_configurations,
                                            score));
    }
    return absl::OkStatus();
  }

  double Progress() const {
    return kSearchShare * std::min(1.0, double(measured_.size()) / options_.measured_configurations);
  }

  // Trees from the features of measured configurations `which` to their log perplexity (its scale
  // is multiplicative).
  absl::StatusOr<std::unique_ptr<GbtPredictor>> Train(const std::vector<size_t>& which) const {
    std::vector<std::vector<float>> features;
    std::vector<float> targets;
    for (size_t i : which) {
      features.push_back(Features(measured_[i].config));
      targets.push_back(static_cast<float>(std::log(measured_[i].score)));
    }
    return GbtPredictor::Train(features, targets, seed_);
  }

  // `searching`: counted among the configurations the search scored (validation is not).
  absl::StatusOr<std::vector<double>> Predict(const GbtPredictor& trees, const std::vector<Configuration>& configs,
                                              bool searching = true) {
    std::vector<std::vector<float>> features;
    for (const auto& c : configs) features.push_back(Features(c));
    SHEARS_ASSIGN_OR_RETURN(auto predicted, trees.Predict(features));
    if (searching) predicted_ += static_cast<int>(configs.size());
    std::vector<double> out;
    for (float p : predicted) out.push_back(std::exp(double(p)));
    return out;
  }

  // Evolution under the trees, started from every configuration measured: tournaments pick
  // parents, uniform crossover, a mutation of single modules and a step along a profile make
  // children, the best `kPopulation` of parents and children survive. The final population,
  // best predicted first.
  absl::StatusOr<std::vector<Scored>> Evolve(const GbtPredictor& trees, int budget, int round) {
    std::vector<Configuration> start;
    for (const auto& m : measured_) start.push_back(m.config);
    SHEARS_ASSIGN_OR_RETURN(auto predicted, Predict(trees, start));
    std::vector<Scored> population;
    for (size_t i = 0; i < start.size(); ++i) population.push_back({start[i], predicted[i]});
    auto by_score = [](const Scored& a, const Scored& b) { return a.score < b.score; };
    std::stable_sort(population.begin(), population.end(), by_score);
    population.resize(std::min<size_t>(population.size(), kPopulation));
    std::uniform_int_distribution<size_t> pick(0, population.size() - 1);
    auto tournament = [&]() -> const Configuration& {
      size_t best = pick(rng_);
      for (int i = 0; i < 2; ++i) best = std::min(best, pick(rng_));  // sorted: a lower index is better
      return population[best].config;
    };
    const int generations = std::max(1, (budget - static_cast<int>(start.size())) / kPopulation);
    for (int g = 0; g < generations; ++g) {
      std::vector<Configuration> children;
      for (int i = 0; i < kPopulation; ++i) {
        Configuration child = space_.Mutate(space_.Crossover(tournament(), tournament(), rng_), 0.3, 0.25, rng_);
        if (i % 2 == 1) child = StepAlongProfile(space_, profiles_, child, options_.max_deviation, 0.25, rng_);
        children.push_back(std::move(child));
      }
      SHEARS_ASSIGN_OR_RETURN(auto scores, Predict(trees, children));
      for (size_t i = 0; i < children.size(); ++i) population.push_back({children[i], scores[i]});
      std::stable_sort(population.begin(), population.end(), by_score);
      population.resize(kPopulation);
      if (observer_.on_progress) {
        observer_.on_progress("searching", Progress(),
                              absl::StrFormat("round %d/%d, generation %d/%d: best predicted perplexity %.3f",
                                              round + 1, kRounds, g + 1, generations, population.front().score));
      }
    }
    return population;
  }

  const SearchSpace& space_;
  ConfigurationScorer& scorer_;
  const std::vector<Profile> profiles_;
  const SearchOptions options_;
  const uint64_t seed_;
  std::mt19937_64 rng_;
  const PruneObserver& observer_;
  std::vector<Scored> measured_;
  int predicted_ = 0;
};

// The options of a run of the base method at `config`'s per-linear sparsities, or its neurons
// removed per block.
PruneOptions BaseRun(const PruneOptions& options, const SearchSpace& space, const Configuration& config) {
  PruneOptions run = options;
  run.method = *options.search.base_method;
  run.search = {};
  run.owl = {};
  run.linear_sparsity.clear();
  run.neurons_removed.clear();
  if (space.unit() == SearchUnit::kFfnNeurons) {
    run.neurons_removed = space.Counts(config);
  } else {
    for (const auto& [name, sparsity] : space.LinearSparsity(config)) run.linear_sparsity[name] = sparsity;
  }
  return run;
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

  // The uniform configuration and, pruning weights, OWL's (within the space's bounds) start the
  // measured set; OWL's is one of the profiles too.
  std::vector<Configuration> anchors = {space.Uniform()};
  Configuration owl;
  if (unit == SearchUnit::kWeights) {
    const OwlOptions owl_options = OwlWithDefaults(options.owl);
    SHEARS_ASSIGN_OR_RETURN(auto ratios, scorer->OutlierRatios(owl_options.outlier_multiple));
    owl = ConfigurationOf(space, OwlSparsities(ratios, options.target_sparsity, owl_options.max_deviation));
    anchors.push_back(owl);
  }
  Search searching(space, *scorer, SearchProfiles(space, owl), search, options.seed, observer);
  SHEARS_RETURN_IF_ERROR(searching.MeasureSamples(anchors));
  SearchReport report;
  SHEARS_ASSIGN_OR_RETURN(report.validation_rank_correlation, searching.Validate(report.training_configurations));
  SHEARS_RETURN_IF_ERROR(searching.Refine());
  const Scored& best = searching.Best();
  report.measured_configurations = static_cast<int>(searching.measured().size());
  report.searched_configurations = searching.predicted();
  report.uniform_score = searching.measured().front().score;
  if (!owl.empty()) report.owl_score = searching.measured()[1].score;
  report.searched_score = best.score;
  report.sparsity = PerBlock(space, best.config);
  const Configuration chosen = best.config;
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
                          RunPruningPass(BaseRun(options, space, chosen), Within(observer, from, 1.0 - from)));
  pruned.search = std::move(report);
  return pruned;
}

}  // namespace shears::engine
