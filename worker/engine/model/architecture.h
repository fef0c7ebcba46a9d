#pragma once
// A decoder-only architecture: which tensors a checkpoint holds, and the forward pass in three
// pieces (embed, one block, logits) so that the executor can run a model one block at a time.
// architecture_factory.h picks the family a config.json names.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/engine/io/model_config.h"
#include "worker/engine/io/model_dir.h"

namespace shears::engine {

struct TensorSpec {
  std::string name;            // relative to the group (a block's prefix), or full for outer tensors
  std::vector<int64_t> shape;  // as stored (gpt2's Conv1D stores [in, out])
  bool optional = false;       // biases some variants have, a head tied to the embeddings
  bool prunable = false;       // a linear weight that pruning methods may zero
};

struct LinearWeight {
  std::string name;  // full tensor name
  std::vector<int64_t> shape;
};

// The feed-forward network of a block, for methods that treat it as one unit (SparseLLM).
struct MlpLayout {
  enum class Activation { kSilu, kRelu, kGeluNew };
  std::string gate;               // empty when the MLP is not gated
  std::string up, down;           // weight names within the block
  std::string gate_bias, up_bias, down_bias;  // empty when the architecture has none
  Activation activation = Activation::kSilu;  // of gate's output when gated, else of up's
};

// Tensors by name (relative to their group), as F32 on the computing device.
using TensorMap = std::map<std::string, torch::Tensor>;

// Linear weights that a checkpoint stores as one tensor, their rows stacked in order: Phi-3's
// qkv_proj holds q, k and v, its gate_up_proj gate and up. The engine computes, prunes, reports
// and rewrites the parts (every method sees the matrices they stand for); only loading and
// writing see the stored tensor.
struct FusedLinear {
  std::string name;                // the stored weight, relative to the block's prefix
  std::vector<std::string> parts;  // the linears it holds, relative to the prefix, in row order
};

// Sees the input of each linear layer as a block computes it, by the weight's name within the
// block: how calibrated methods gather their statistics from real activations.
using LinearInputs = std::function<void(const std::string& weight_name, const torch::Tensor& input)>;

class Architecture {
 public:
  virtual ~Architecture() = default;

  const ModelConfig& config() const { return config_; }
  int num_blocks() const { return static_cast<int>(config_.layers); }

  virtual std::string BlockPrefix(int block) const = 0;
  // The tensors of block `block` (which may differ in their FFN width and in the linears stored
  // as low-rank factors), named relative to BlockPrefix, each fused linear's parts apart.
  std::vector<TensorSpec> BlockTensors(int block) const;
  // The groups of block `block` stored fused: all of the family's, but a group one of whose parts
  // is stored as low-rank factors is stored part by part, each under its own name.
  std::vector<FusedLinear> FusedLinears(int block) const;
  // BlockTensors as the checkpoint stores them: each fused group one tensor.
  std::vector<TensorSpec> StoredBlockTensors(int block) const;
  // Block `block`'s tensors by BlockTensors' names, F32 on `device` (in the dtype they are stored
  // in with `stored_dtype`), each fused tensor split.
  TensorMap LoadBlock(const ModelDir& model, int block, const torch::Device& device, bool stored_dtype = false) const;
  // Some of block `block`'s tensors (relative names) as stored: each fused group whose parts are
  // all in `tensors` stacked into its stored tensor, the others as they are.
  TensorMap Fuse(int block, const TensorMap& tensors) const;
  // The reverse: each stored fused tensor in `tensors` split into its parts, the others as they are.
  TensorMap Split(int block, const TensorMap& tensors) const;
  // The full name of the stored tensor that holds `name`: its fused tensor's, or its own.
  std::string StoredNameOf(const std::string& name) const;
  // The tensors outside the blocks that the forward pass reads, with full names.
  virtual std::vector<TensorSpec> OuterTensors() const = 0;

  // The block's feed-forward network.
  virtual MlpLayout Mlp() const = 0;
  // True when linear weights are stored [in, out] (GPT-2's Conv1D) rather than [out, in].
  virtual bool LinearsStoredTransposed() const { return false; }
  // A stored linear weight as the methods see it, [out, in]: a view, transposed for Conv1D.
  torch::Tensor OutInView(const torch::Tensor& stored) const { return LinearsStoredTransposed() ? stored.t() : stored; }

  // The block a tensor (full name) belongs to, or -1 for the embeddings, final norm and head.
  int BlockOf(const std::string& name) const;

  // The prunable linear weights of decoder block `block`, with full names.
  std::vector<LinearWeight> BlockLinears(int block) const;
  // Every tensor the forward pass needs exists, as a floating-point tensor of the expected shape.
  absl::Status CheckWeights(const ModelDir& model) const;

  // ids [B, T] -> hidden [B, T, d]
  virtual torch::Tensor Embed(const TensorMap& outer, const torch::Tensor& ids) const = 0;
  // hidden [B, T, d] -> hidden [B, T, d] through block `index`, whose tensors `block` holds (blocks
  // may differ: a sliding window, a width). `observe`, when not null, is shown every linear's input.
  virtual torch::Tensor Block(int index, const TensorMap& block, const torch::Tensor& hidden,
                              const LinearInputs* observe) const = 0;
  // For families whose block adds its attention and then its MLP to the residual stream (Llama's,
  // Gemma's, Phi-3's): the block's two halves, AttentionHalf(h) the stream after the attention
  // sublayer and MlpHalf of that the block's output, so that each sublayer's effect can be
  // measured apart. A half the block does not have (a Nemotron-NAS no_op) passes its input
  // through. Families whose block does not split so return an undefined tensor (the default).
  virtual bool SplitsIntoSublayers() const { return false; }
  virtual torch::Tensor AttentionHalf(int index, const TensorMap& block, const torch::Tensor& hidden,
                                      const LinearInputs* observe) const {
    return {};
  }
  virtual torch::Tensor MlpHalf(int index, const TensorMap& block, const torch::Tensor& hidden,
                                const LinearInputs* observe) const {
    return {};
  }
  // hidden [B, T, d] -> logits [B, T, vocab]
  virtual torch::Tensor Logits(const TensorMap& outer, const torch::Tensor& hidden) const = 0;

 protected:
  explicit Architecture(ModelConfig config) : config_(std::move(config)) {}
  // The block's tensors with every linear weight stored whole.
  virtual std::vector<TensorSpec> DenseBlockTensors(int block) const = 0;
  // The family's fused groups (none but Phi-3's).
  virtual std::vector<FusedLinear> FusedGroups() const { return {}; }
  ModelConfig config_;
};

// Loads `specs` (names relative to `prefix`) as F32 on `device` (in their stored dtype with
// `stored_dtype`); absent optional tensors are left out.
TensorMap LoadTensors(const ModelDir& model, const std::string& prefix, const std::vector<TensorSpec>& specs,
                      const torch::Device& device, bool stored_dtype = false);

}  // namespace shears::engine
