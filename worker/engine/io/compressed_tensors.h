#pragma once
// The compressed-tensors sparse layouts (the format of vllm-project/llm-compressor), a storage
// format: written from and read back into dense model directories. vLLM no longer serves them
// (docs/calibrated-methods.md says which readers do).
//
// A compressed weight `P.weight` [rows, cols] is stored as:
//   sparse-bitmask:    P.shape (I64 [2]), P.compressed (the non-zero values in row-major order,
//                      1-D, in the weight's dtype), P.bitmask (U8 [rows, ceil(cols/8)], bit j of
//                      byte b flags column 8b+j), P.row_offsets (I64 [rows], where each row's
//                      values start);
//   sparse-24-bitmask: P.shape (I64 [2, 1]), P.compressed ([rows, cols/2], the two kept values of
//                      every group of four), P.bitmask as above.
// config.json names the layout in quantization_config.sparsity_config.

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/io/tensor_io.h"

namespace shears::engine {

inline constexpr char kSparseBitmaskFormat[] = "sparse-bitmask";
inline constexpr char kSparse24BitmaskFormat[] = "sparse-24-bitmask";

// The sparse layout a config.json declares; empty for a dense model.
std::string SparsityFormat(const nlohmann::json& config);

// One weight (CPU, stored dtype) as the tensors of `format`, named after `name` less ".weight".
// sparse-24-bitmask fails unless every group of four along a row holds at most two non-zeros.
absl::StatusOr<NamedTensors> CompressWeight(const std::string& name, const torch::Tensor& weight,
                                            const std::string& format);

struct SparsityDescription {
  std::string format;     // kSparseBitmaskFormat or kSparse24BitmaskFormat
  std::string structure;  // "unstructured", "2:4", ...
  double global_sparsity = 0.0;
};

// Writes `dense_dir`'s model into `out_dir` with the weights named in `compress` stored in the
// sparse layout, the rest unchanged, the same files and sharding, config.json declaring the
// layout. Returns the files written, relative to `out_dir`.
absl::StatusOr<std::vector<std::string>> CompressModel(const std::string& dense_dir, const std::string& out_dir,
                                                       const std::set<std::string>& compress,
                                                       const SparsityDescription& sparsity);

// The reverse: the dense model directory the compressed one was made from, bit for bit.
absl::Status DecompressModel(const std::string& compressed_dir, const std::string& out_dir);

}  // namespace shears::engine
