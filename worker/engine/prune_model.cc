#include "worker/engine/prune_model.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/allocation/owl.h"
#include "worker/engine/api/job_rules.h"
#include "worker/engine/methods/pruning_method.h"
#include "worker/engine/run/prune_pass.h"
#include "worker/engine/search/predictor_search.h"

namespace shears::engine {
namespace {

// The one exception boundary of the engine. LibTorch reports its errors (out of memory, a device
// fault, a shape it cannot broadcast) as exceptions; a job fails with them, the worker does not.
template <typename Run>
absl::StatusOr<PruneReport> Guarded(Run run) {
  try {
    return run();
  } catch (const c10::Error& e) {  // its what() carries a stack trace of LibTorch's own frames
    return absl::InternalError(absl::StrCat("engine: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("engine: ", e.what()));
  } catch (...) {
    return absl::InternalError("engine: an error that is not a std::exception");
  }
}

// Runs `run` with a stage clock in the observer; the time no stage claimed (a method's own
// passes over the model, outside the block loop) counts as pruning.
template <typename Run>
absl::StatusOr<PruneReport> Clocked(const PruneObserver& observer, Run run) {
  StageClock clock;
  PruneObserver timed = observer;
  timed.clock = &clock;
  const auto start = std::chrono::steady_clock::now();
  auto report = run(timed);
  if (!report.ok()) return report;
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  clock.Add("prune", std::max(0.0, total - clock.total()));
  report->stages = clock.times();
  return report;
}

}  // namespace

absl::StatusOr<PruneReport> PruneModel(const PruneOptions& options, const PruneObserver& observer) {
  return Guarded([&]() -> absl::StatusOr<PruneReport> {
    SHEARS_RETURN_IF_ERROR(CheckJobRules(options));
    return Clocked(observer, [&](const PruneObserver& timed) {
      if (options.method == Method::kPredictorSearch) return SearchAndPrune(options, timed);
      if (options.allocation == Allocation::kOwl) return PruneWithOwl(options, timed);
      return RunPruningPass(options, timed);
    });
  });
}

absl::StatusOr<PruneReport> PruneModelWith(const PruneOptions& options, const PruneObserver& observer,
                                           std::unique_ptr<PruningMethod> method) {
  return Guarded([&]() -> absl::StatusOr<PruneReport> {
    SHEARS_RETURN_IF_ERROR(CheckJobRules(options));
    return Clocked(observer, [&](const PruneObserver& timed) { return RunPruningPass(options, timed, std::move(method)); });
  });
}

}  // namespace shears::engine
