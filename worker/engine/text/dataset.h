#pragma once
// Calibration and evaluation data: plain text, JSON Lines with a "text" field, or token ids
// already made (raw little-endian .bin, or .npy), cut into windows the way the papers do.

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/text/tokenizer.h"

namespace shears::engine {

// Every id of the file as one int64 sequence. The format follows the name:
//   *.npy                           NumPy array of unsigned or signed integers, any shape
//   *.u32.bin, *.uint32.bin         raw little-endian uint32
//   *.bin (also *.u16.bin)          raw little-endian uint16 (nanoGPT's convention)
//   *.jsonl                         one JSON object a line; their "text" fields joined by blank lines
//   anything else                   UTF-8 text
// Text needs `tokenizer`; ids at or beyond `vocab` are an error naming their position.
absl::StatusOr<torch::Tensor> LoadTokenIds(const std::string& path, const Tokenizer* tokenizer, int64_t vocab);

// `num_samples` windows of `seq_len` ids at random starts drawn with `seed` (SparseGPT's and
// Wanda's calibration sampling). [num_samples, seq_len]
absl::StatusOr<torch::Tensor> CalibrationWindows(const torch::Tensor& ids, int64_t num_samples, int64_t seq_len,
                                                 uint64_t seed);

// Consecutive non-overlapping windows over the first `token_budget` ids (0: all of them); the
// remainder shorter than a window is dropped. [N, seq_len]
absl::StatusOr<torch::Tensor> EvaluationWindows(const torch::Tensor& ids, int64_t seq_len, int64_t token_budget);

}  // namespace shears::engine
