#pragma once
// The predictor search's non-neural predictor: gradient-boosted regression trees (XGBoost, Debian's
// libxgboost) from a configuration's features to its score.

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace shears::engine {

class GbtPredictor {
 public:
  // Trains on `features` (one row per configuration, all rows the same length) and `targets`.
  // One thread and a fixed seed make the trees the same on every run.
  static absl::StatusOr<std::unique_ptr<GbtPredictor>> Train(const std::vector<std::vector<float>>& features,
                                                             const std::vector<float>& targets, uint64_t seed);
  ~GbtPredictor();

  absl::StatusOr<std::vector<float>> Predict(const std::vector<std::vector<float>>& features) const;

 private:
  explicit GbtPredictor(void* booster) : booster_(booster) {}
  void* booster_;  // BoosterHandle
};

// Spearman's rank correlation (ties share their mean rank); 0 when either side is constant.
double SpearmanCorrelation(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace shears::engine
