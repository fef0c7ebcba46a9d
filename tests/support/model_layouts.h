#pragma once
// config.json layouts of today's Llama-shaped, Gemma and Phi-3 checkpoints, small: what the family tests
// build random models of and prune.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shears::testing {

inline constexpr int64_t kLayoutVocab = 64;

// hidden 32, 4 heads of 8 (2 KV heads), FFN 48, 3 blocks, vocabulary 64; `extra` on top.
nlohmann::json Config(const std::string& model_type, const nlohmann::json& extra = nlohmann::json::object());

struct Layout {
  std::string name;
  nlohmann::json config;
};

// Each differs from plain Llama in what a real checkpoint of the family writes.
std::vector<Layout> Layouts();

}  // namespace shears::testing
