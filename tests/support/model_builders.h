#pragma once
// Models the tests make on the fly: variants of the committed fixtures and synthetic models of any size.

#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace shears::testing {

// Copies a model directory, converting float tensors to `dtype` and splitting the weights into
// `shards` files with an index when shards > 1.
void RewriteModel(const std::string& from, const std::string& to, torch::ScalarType dtype, int shards);

// A llama model with random weights (seeded), for tests that need many or large blocks.
void WriteSyntheticLlama(const std::string& dir, int blocks, int hidden, int ffn, int vocab = 256);

// An OPT model with random weights and biases (seeded). `embed_dim` != `hidden` adds the
// project_in/project_out pair; `layer_norm_before` false is the post-LayerNorm variant (opt-350m).
void WriteSyntheticOpt(const std::string& dir, int blocks, int hidden, int ffn, int vocab, int embed_dim,
                       bool layer_norm_before);

// A model of any family the engine computes, with the tensors its architecture names for
// `config` and random values everywhere (norm weights near one, biases near zero but not zero), so
// that a forward pass that skips any tensor shows. F32; RewriteModel converts.
void WriteRandomModel(const std::string& dir, const nlohmann::json& config, uint64_t seed);

}  // namespace shears::testing
