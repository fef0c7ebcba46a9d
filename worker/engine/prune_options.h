#pragma once
// What a pruning run is asked to do, and what it reports back. Plain C++: the worker fills these from
// the protobuf JobSpec, so the engine has neither gRPC nor protobuf in it.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace shears::engine {

enum class Method { kMagnitude };
enum class Structure { kUnstructured };

// Perplexity measured before and after pruning, the protocol the papers report on WikiText-2.
struct EvaluationOptions {
  std::string path;  // a local dataset file (see dataset.h for the formats)
  int64_t seq_len = 0;
  int64_t max_tokens = 0;  // 0: all
};

// Calibration windows for methods that learn from activations (SparseGPT's and Wanda's sampling).
struct CalibrationOptions {
  std::string path;  // a local dataset file (see dataset.h for the formats)
  int64_t num_samples = 0;
  int64_t seq_len = 0;
  uint64_t seed = 0;
};

struct PruneOptions {
  std::string model_dir;   // a local Hugging Face model directory
  std::string output_dir;  // created if missing; files are overwritten
  Method method = Method::kMagnitude;
  Structure structure = Structure::kUnstructured;
  double target_sparsity = 0.0;
  uint64_t seed = 0;
  std::string device = "cpu";  // "cpu" or "cuda:N"
  std::optional<EvaluationOptions> evaluation;
  std::optional<CalibrationOptions> calibration;
  // Where per-block checkpoints go; a run finding one made from the same inputs resumes after
  // its last finished block. Empty: no checkpoints.
  std::string checkpoint_dir;
};

struct LayerReport {
  std::string name;
  int block = 0;
  int64_t parameters = 0;
  int64_t zeros = 0;  // after pruning
  double seconds = 0.0;
};

struct EvaluationReport {
  int64_t windows = 0;
  int64_t seq_len = 0;
  int64_t predicted_tokens = 0;
  double dense_perplexity = 0.0;
  double pruned_perplexity = 0.0;
};

struct PruneReport {
  int64_t parameters_before = 0;  // prunable parameters
  int64_t parameters_after = 0;   // of those, the non-zero ones after pruning
  std::vector<LayerReport> layers;
  std::vector<std::string> files;  // written into output_dir, relative names
  std::optional<EvaluationReport> evaluation;

  double achieved_sparsity() const {
    return parameters_before == 0 ? 0.0 : 1.0 - double(parameters_after) / double(parameters_before);
  }
};

// Called from the pruning thread. `cancelled` is polled between layers.
struct PruneObserver {
  std::function<void(const std::string& stage, double fraction, const std::string& message)> on_progress;
  std::function<void(const LayerReport&)> on_layer;
  std::function<bool()> cancelled;
};

}  // namespace shears::engine
