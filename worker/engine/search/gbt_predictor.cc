#include "worker/engine/search/gbt_predictor.h"

#include <xgboost/c_api.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "absl/strings/str_cat.h"

namespace shears::engine {
namespace {

// Shallow trees and a small step: a few dozen configurations train it.
constexpr int kRounds = 300;
constexpr const char* kParams[][2] = {{"objective", "reg:squarederror"}, {"max_depth", "3"}, {"eta", "0.05"},
                                      {"subsample", "0.8"},              {"colsample_bytree", "0.8"},
                                      {"min_child_weight", "1"},         {"nthread", "1"},
                                      {"verbosity", "0"}};

absl::Status Check(int rc, const char* what) {
  if (rc == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("xgboost ", what, ": ", XGBGetLastError()));
}

// A DMatrix freed when it goes out of scope.
class Matrix {
 public:
  static absl::StatusOr<Matrix> From(const std::vector<std::vector<float>>& rows) {
    if (rows.empty() || rows[0].empty()) return absl::InvalidArgumentError("the predictor needs features");
    std::vector<float> flat;
    for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
    DMatrixHandle handle = nullptr;
    if (auto st = Check(XGDMatrixCreateFromMat(flat.data(), rows.size(), rows[0].size(), NAN, &handle), "matrix");
        !st.ok()) {
      return st;
    }
    return Matrix(handle);
  }
  Matrix(Matrix&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  ~Matrix() {
    if (handle_ != nullptr) XGDMatrixFree(handle_);
  }
  DMatrixHandle get() const { return handle_; }

 private:
  explicit Matrix(DMatrixHandle handle) : handle_(handle) {}
  DMatrixHandle handle_;
};

std::vector<double> Ranks(const std::vector<double>& values) {
  std::vector<size_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return values[a] < values[b]; });
  std::vector<double> ranks(values.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && values[order[j + 1]] == values[order[i]]) ++j;
    for (size_t k = i; k <= j; ++k) ranks[order[k]] = (double(i) + double(j)) / 2.0;
    i = j + 1;
  }
  return ranks;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GbtPredictor>> GbtPredictor::Train(const std::vector<std::vector<float>>& features,
                                                                 const std::vector<float>& targets, uint64_t seed) {
  auto matrix = Matrix::From(features);
  if (!matrix.ok()) return matrix.status();
  if (auto st = Check(XGDMatrixSetFloatInfo(matrix->get(), "label", targets.data(), targets.size()), "labels");
      !st.ok()) {
    return st;
  }
  BoosterHandle booster = nullptr;
  const DMatrixHandle train[] = {matrix->get()};
  if (auto st = Check(XGBoosterCreate(train, 1, &booster), "booster"); !st.ok()) return st;
  std::unique_ptr<GbtPredictor> predictor(new GbtPredictor(booster));
  for (const auto& [name, value] : kParams) {
    if (auto st = Check(XGBoosterSetParam(booster, name, value), name); !st.ok()) return st;
  }
  const std::string seed_text = std::to_string(seed % 2147483647);
  if (auto st = Check(XGBoosterSetParam(booster, "seed", seed_text.c_str()), "seed"); !st.ok()) return st;
  for (int round = 0; round < kRounds; ++round) {
    if (auto st = Check(XGBoosterUpdateOneIter(booster, round, matrix->get()), "training"); !st.ok()) return st;
  }
  return predictor;
}

GbtPredictor::~GbtPredictor() { XGBoosterFree(booster_); }

absl::StatusOr<std::vector<float>> GbtPredictor::Predict(const std::vector<std::vector<float>>& features) const {
  auto matrix = Matrix::From(features);
  if (!matrix.ok()) return matrix.status();
  bst_ulong length = 0;
  const float* out = nullptr;
  if (auto st = Check(XGBoosterPredict(booster_, matrix->get(), 0, 0, 0, &length, &out), "prediction"); !st.ok()) {
    return st;
  }
  return std::vector<float>(out, out + length);
}

double SpearmanCorrelation(const std::vector<double>& a, const std::vector<double>& b) {
  const auto ra = Ranks(a), rb = Ranks(b);
  const double n = double(ra.size());
  const double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n, mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
  double cov = 0, va = 0, vb = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    cov += (ra[i] - ma) * (rb[i] - mb);
    va += (ra[i] - ma) * (ra[i] - ma);
    vb += (rb[i] - mb) * (rb[i] - mb);
  }
  return va == 0 || vb == 0 ? 0.0 : cov / std::sqrt(va * vb);
}

}  // namespace shears::engine
