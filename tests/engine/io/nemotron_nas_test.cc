// Which layout a structured rewrite writes its block shapes in: the family's own config when the
// blocks stay alike, Nemotron-NAS when they differ and the layout computes the family, Shears' own
// list of FFN widths for the families it does not, and a refusal naming what no layout holds.
#include "worker/engine/io/nemotron_nas.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace shears::engine {
namespace {

nlohmann::json Llama(const std::string& model_type = "llama") {
  return {{"model_type", model_type},   {"architectures", {"LlamaForCausalLM"}}, {"vocab_size", 64},
          {"hidden_size", 32},          {"intermediate_size", 48},               {"num_hidden_layers", 2},
          {"num_attention_heads", 4},   {"num_key_value_heads", 2},              {"rms_norm_eps", 1e-5},
          {"tie_word_embeddings", false}};
}

nlohmann::json Written(const nlohmann::json& config, const std::vector<BlockShape>& shapes) {
  auto parsed = ModelConfig::Parse(config);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  auto out = ConfigWithBlockShapes(config, *parsed, shapes);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : nlohmann::json();
}

TEST(BlockShapes, AlikeBlocksKeepTheFamilysOwnConfig) {
  auto out = Written(Llama(), {{1, 40}, {1, 40}});
  EXPECT_EQ(out["model_type"], "llama");
  EXPECT_EQ(out["intermediate_size"], 40);
  EXPECT_EQ(out["num_key_value_heads"], 1);
  EXPECT_FALSE(out.contains("block_configs"));
  EXPECT_TRUE(LayoutFiles(out).empty());
}

TEST(BlockShapes, DifferentBlocksOfALlamaAreWrittenInTheNemotronNasLayout) {
  auto out = Written(Llama(), {{2, 40}, {0, 256}});
  EXPECT_EQ(out["model_type"], "nemotron-nas");
  EXPECT_EQ(out["architectures"], nlohmann::json::array({"DeciLMForCausalLM"}));
  EXPECT_EQ(out["head_dim"], 8);
  EXPECT_TRUE(out["intermediate_size"].is_null());
  EXPECT_TRUE(out["num_key_value_heads"].is_null());
  const nlohmann::json want = {
      // 40 is no multiple of 256: intermediate_size, and no ffn_mult key (vLLM reads one if present).
      {{"attention", {{"no_op", false}, {"replace_with_linear", false}, {"n_heads_in_group", 2}}},
       {"ffn", {{"no_op", false}, {"replace_with_linear", false}, {"intermediate_size", 40}}}},
      // 256 is: ffn_mult 12 (int(2 · 12 · 32 / 3) = 256), which every reader of the layout takes.
      {{"attention", {{"no_op", true}, {"replace_with_linear", false}, {"n_heads_in_group", nullptr}}},
       {"ffn", {{"no_op", false}, {"replace_with_linear", false}, {"ffn_mult", 12.0}}}}};
  EXPECT_EQ(out["block_configs"], want);
  const auto files = LayoutFiles(out);
  ASSERT_EQ(files.count("configuration_decilm.py"), 1u);
  EXPECT_NE(files.at("configuration_decilm.py").find("class DeciLMConfig(LlamaConfig)"), std::string::npos);
  // Read back: the shapes written.
  auto parsed = ModelConfig::Parse(out);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(BlockShapesOf(*parsed), (std::vector<BlockShape>{{2, 40}, {0, 256}}));
  // A no_op FFN, as NVIDIA writes it.
  out = Written(Llama(), {{2, 0}, {1, 24}});
  EXPECT_EQ(out["block_configs"][0]["ffn"], nlohmann::json({{"no_op", true}, {"replace_with_linear", false}, {"ffn_mult", nullptr}}));
  EXPECT_EQ(out["block_configs"][1]["attention"]["n_heads_in_group"], 4);
  // A Nemotron-NAS model stays in its layout, also when its blocks become alike.
  EXPECT_EQ(Written(out, {{2, 24}, {2, 24}})["model_type"], "nemotron-nas");
}

TEST(BlockShapes, FamiliesTheLayoutDoesNotComputeKeepShearsOwnWidthsOrAreRefused) {
  auto qwen3 = Llama("qwen3");
  qwen3["head_dim"] = 8;
  auto out = Written(qwen3, {{2, 40}, {2, 24}});
  EXPECT_EQ(out["model_type"], "qwen3");
  EXPECT_EQ(out["intermediate_size"], 40);
  EXPECT_EQ(out[kFfnSizesKey], nlohmann::json::array({40, 24}));
  auto mistral = Llama("mistral");
  mistral["sliding_window"] = 8;
  EXPECT_EQ(Written(mistral, {{2, 40}, {2, 24}})["model_type"], "mistral") << "a sliding window is not in the layout";
  mistral["sliding_window"] = nullptr;
  EXPECT_EQ(Written(mistral, {{2, 40}, {2, 24}})["model_type"], "nemotron-nas");
  auto parsed = ModelConfig::Parse(qwen3);
  auto refused = ConfigWithBlockShapes(qwen3, *parsed, {{2, 40}, {0, 24}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(),
            "model_type qwen3 has no layout for removed sublayers (the Nemotron-NAS layout expresses llama, and "
            "mistral without sliding windows)");
  // vLLM's DeciLM cannot run an FFN before the first attention.
  auto llama = ModelConfig::Parse(Llama());
  refused = ConfigWithBlockShapes(Llama(), *llama, {{0, 40}, {2, 40}});
  EXPECT_EQ(refused.status().message(),
            "the first block that keeps a sublayer (0) must keep its attention: vLLM's DeciLMForCausalLM cannot run an "
            "FFN before any attention");
  EXPECT_TRUE(ConfigWithBlockShapes(Llama(), *llama, {{0, 0}, {2, 40}}).ok()) << "an empty block before is no FFN";
  refused = ConfigWithBlockShapes(qwen3, *parsed, {{2, 40}, {1, 40}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("different numbers of KV heads"), std::string::npos) << refused.status();
}

}  // namespace
}  // namespace shears::engine
