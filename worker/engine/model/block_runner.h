#pragma once
// Runs a model one decoder block at a time over hidden states held on the device, the pattern of
// SparseGPT and Wanda: the whole model is never in memory, only one block and the activations.

#include <torch/torch.h>

#include <optional>

#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture.h"

namespace shears::engine {

// A batch of a block's input, the residual stream after its attention sublayer, and its output.
using SublayerStreams =
    std::function<void(const torch::Tensor& input, const torch::Tensor& after_attention, const torch::Tensor& output)>;

class BlockRunner {
 public:
  // `batch` windows go through a block at a time, which bounds the attention scores' memory.
  BlockRunner(const ModelDir& model, const Architecture& arch, torch::Device device, int64_t batch = 8);

  const Architecture& arch() const { return arch_; }
  const torch::Device& device() const { return device_; }

  // ids [N, T] -> hidden [N, T, d]
  torch::Tensor Embed(const torch::Tensor& ids) const;
  // Block `block`'s tensors, F32 on the device, named relative to its prefix.
  TensorMap LoadBlock(int block) const;
  // hidden [N, T, d] through block `index`, whose tensors `block` holds; `observe`, when not null,
  // sees every linear's input. `streams`, when not null and the family's block splits into its
  // sublayers (Architecture::SplitsIntoSublayers), sees each batch's residual stream before,
  // between and after them.
  torch::Tensor Run(int index, const TensorMap& block, const torch::Tensor& hidden,
                    const LinearInputs* observe = nullptr, const SublayerStreams* streams = nullptr) const;
  // Sum of next-token negative log-likelihoods and their count, from the last hidden states.
  std::pair<double, int64_t> NextTokenLoss(const torch::Tensor& hidden, const torch::Tensor& ids) const;
  // The gradient of the mean next-token loss over `ids` with respect to the last hidden states.
  torch::Tensor LossGradient(const torch::Tensor& hidden, const torch::Tensor& ids) const;
  // Both make the logits of a few positions at a time, at most `elements` floats of them (at
  // least one position); 2^22 (16 MiB) unless set, small enough for malloc to reuse rather than
  // map afresh each time.
  void set_logit_budget(int64_t elements) { logit_budget_ = elements; }
  // Logits [N, T, vocab] from the last hidden states.
  torch::Tensor Logits(const torch::Tensor& hidden) const;

 private:
  // The embeddings and the head, read on first use: a run that only prunes never needs them, and
  // with a large vocabulary they are the biggest tensors of the model.
  const TensorMap& Outer() const;

  const ModelDir& model_;
  const Architecture& arch_;
  const torch::Device device_;
  const int64_t batch_;
  int64_t logit_budget_ = int64_t{1} << 22;
  mutable std::optional<TensorMap> outer_;
};

// Perplexity over the windows `ids` [N, T] (mean NLL of every predicted token), computed block
// by block.
double Perplexity(const BlockRunner& runner, const torch::Tensor& ids);

}  // namespace shears::engine
