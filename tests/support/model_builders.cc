#include "tests/support/model_builders.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tools/synthetic_model.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/training/trainer.h"

namespace shears::testing {

using namespace shears::engine;
namespace fs = std::filesystem;

namespace {

// Writes `tensors` as safetensors files in `dir`: one model.safetensors, or `shards` files and the index.
void WriteWeights(const std::string& dir, const NamedTensors& tensors,
                  int shards) {
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  for (int s = 0; s < shards; ++s) {
    const std::string name = shards == 1 ? "model.safetensors"
                                         : "model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(shards) +
                                               ".safetensors";
    NamedTensors shard;
    for (size_t i = s; i < tensors.size(); i += shards) {
      shard.push_back(tensors[i]);
      index["weight_map"][tensors[i].first] = name;
    }
    ASSERT_TRUE(WriteSafetensors((fs::path(dir) / name).string(), shard).ok());
  }
  if (shards > 1) ASSERT_TRUE(WriteFileAtomically((fs::path(dir) / kIndexFile).string(), index.dump()).ok());
}

}  // namespace

void RewriteModel(const std::string& from, const std::string& to, torch::ScalarType dtype, int shards) {
  auto model = ModelDir::Open(from);
  ASSERT_TRUE(model.ok()) << model.status();
  fs::create_directories(to);
  fs::copy_file(fs::path(from) / "config.json", fs::path(to) / "config.json");
  NamedTensors tensors;
  for (const auto& file : (*model)->files()) {
    for (const auto& info : file->tensors()) tensors.emplace_back(info.name, LoadTensor(*file, info).to(dtype));
  }
  WriteWeights(to, tensors, shards);
}

void WriteSyntheticLlama(const std::string& dir, int blocks, int hidden, int ffn, int vocab) {
  tools::SyntheticLlama shape;
  shape.blocks = blocks;
  shape.hidden = hidden;
  shape.ffn = ffn;
  shape.vocab = vocab;
  ASSERT_TRUE(tools::WriteSyntheticLlama(shape, dir).ok());
}

void WriteSyntheticOpt(const std::string& dir, int blocks, int hidden, int ffn, int vocab, int embed_dim,
                       bool layer_norm_before) {
  fs::create_directories(dir);
  const int max_positions = 64;
  nlohmann::json config = {{"model_type", "opt"},
                           {"hidden_size", hidden},
                           {"ffn_dim", ffn},
                           {"num_hidden_layers", blocks},
                           {"num_attention_heads", 4},
                           {"vocab_size", vocab},
                           {"max_position_embeddings", max_positions},
                           {"word_embed_proj_dim", embed_dim},
                           {"do_layer_norm_before", layer_norm_before},
                           {"activation_function", "relu"}};
  ASSERT_TRUE(WriteFileAtomically((fs::path(dir) / "config.json").string(), config.dump(2)).ok());
  torch::manual_seed(1);
  auto rnd = [](std::vector<int64_t> shape, double scale) { return torch::randn(shape) * scale; };
  NamedTensors tensors = {
      {"model.decoder.embed_tokens.weight", rnd({vocab, embed_dim}, 0.5)},
      {"model.decoder.embed_positions.weight", rnd({max_positions + 2, hidden}, 0.5)}};
  if (layer_norm_before) {
    tensors.emplace_back("model.decoder.final_layer_norm.weight", 1 + rnd({hidden}, 0.1));
    tensors.emplace_back("model.decoder.final_layer_norm.bias", rnd({hidden}, 0.1));
  }
  if (embed_dim != hidden) {
    tensors.emplace_back("model.decoder.project_in.weight", rnd({hidden, embed_dim}, 0.3));
    tensors.emplace_back("model.decoder.project_out.weight", rnd({embed_dim, hidden}, 0.3));
  }
  for (int b = 0; b < blocks; ++b) {
    const std::string p = "model.decoder.layers." + std::to_string(b) + ".";
    for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"}) {
      tensors.emplace_back(p + n + ".weight", rnd({hidden, hidden}, 0.2));
      tensors.emplace_back(p + n + ".bias", rnd({hidden}, 0.1));
    }
    for (const char* n : {"self_attn_layer_norm", "final_layer_norm"}) {
      tensors.emplace_back(p + n + ".weight", 1 + rnd({hidden}, 0.1));
      tensors.emplace_back(p + n + ".bias", rnd({hidden}, 0.1));
    }
    tensors.emplace_back(p + "fc1.weight", rnd({ffn, hidden}, 0.2));
    tensors.emplace_back(p + "fc1.bias", rnd({ffn}, 0.1));
    tensors.emplace_back(p + "fc2.weight", rnd({hidden, ffn}, 0.2));
    tensors.emplace_back(p + "fc2.bias", rnd({hidden}, 0.1));
  }
  WriteWeights(dir, tensors, 1);
}

void WriteRandomModel(const std::string& dir, const nlohmann::json& config, uint64_t seed) {
  auto arch = MakeArchitecture(config);
  ASSERT_TRUE(arch.ok()) << arch.status();
  ModelWeights weights = InitWeights(**arch, seed, torch::kCPU);
  // InitWeights starts norms at one and biases at zero: move them off, so that each one counts;
  // and matrices ten times larger than a fresh model's, so that attention is far from uniform and
  // positions (rope schedules, windows) change the logits visibly.
  auto perturb = [](TensorMap& tensors) {
    for (auto& [name, t] : tensors) t = t.dim() == 1 ? t + 0.1 * torch::randn_like(t) : 10 * t;
  };
  perturb(weights.outer);
  for (auto& block : weights.blocks) perturb(block);
  ASSERT_TRUE(SaveModel(**arch, weights, config, dir).ok());
}

}  // namespace shears::testing
