// Today's Llama-shaped checkpoints, by the layout of their config.json: Llama 3.x rope scaling,
// explicit head_dim, attention and MLP biases, Mistral's and Qwen's sliding windows, Qwen3's q/k
// norms. Random models of each layout, in F32 and BF16, against the reference forward pass that
// tests/reference/hf_llama.py and hf_gemma.py write from Hugging Face's modeling code, trained
// ones of each family too; and what is refused.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/support/model_builders.h"
#include "tests/support/model_layouts.h"
#include "tests/support/process.h"
#include "tests/support/references.h"
#include "tests/support/test_util.h"
#include "worker/engine/io/model_config.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/model/rope.h"

namespace shears::engine {
namespace {

using shears::testing::Config;
using shears::testing::Layouts;
using shears::testing::TempDir;
constexpr int64_t kVocab = shears::testing::kLayoutVocab;

double RelativeError(const torch::Tensor& got, const torch::Tensor& want) {
  return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
}

torch::Tensor EngineLogits(const std::string& dir, const torch::Tensor& ids) {
  auto model = ModelDir::Open(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  auto arch = MakeArchitecture((*model)->config());
  EXPECT_TRUE(arch.ok()) << arch.status();
  EXPECT_TRUE((*arch)->CheckWeights(**model).ok()) << (*arch)->CheckWeights(**model);
  BlockRunner runner(**model, **arch, torch::kCPU, /*batch=*/2);
  auto hidden = runner.Embed(ids);
  for (int b = 0; b < (*arch)->num_blocks(); ++b) hidden = runner.Run(b, runner.LoadBlock(b), hidden);
  return runner.Logits(hidden);
}

// Each model's logits for `ids` [2, 24] against the reference's, to one in ten thousand of the
// largest logit.
void ExpectLogitsAgreeWithTheReference(const std::vector<std::string>& models, const torch::Tensor& ids,
                                       const TempDir& dir) {
  {
    std::ofstream out(dir / "ids.bin", std::ios::binary);
    out.write(static_cast<const char*>(ids.contiguous().data_ptr()), ids.numel() * sizeof(int64_t));
  }
  std::string jobs;
  for (const auto& model : models) jobs += model + " " + (dir / "ids.bin") + " 2 24 " + model + "/ref\n";
  shears::testing::RunForwardJobs(jobs, dir.path());
  for (const auto& model : models) {
    SCOPED_TRACE(model.substr(model.rfind('/') + 1));
    auto config = ModelConfig::Parse(nlohmann::json::parse(ReadFile(model + "/config.json").value()));
    ASSERT_TRUE(config.ok()) << config.status();
    const std::string raw = ReadFile(model + "/ref.logits").value_or("");
    auto want = torch::empty({2, 24, config->vocab});
    ASSERT_EQ(raw.size(), static_cast<size_t>(want.numel() * 4));
    std::memcpy(want.data_ptr(), raw.data(), raw.size());
    EXPECT_LT(RelativeError(EngineLogits(model, ids), want), 1e-4);
  }
}

TEST(Families, EveryLayoutAgreesWithTheReferenceToOneInTenThousandInF32AndBF16) {
  TempDir dir;
  torch::manual_seed(11);
  const auto ids = torch::randint(kVocab, {2, 24}, torch::kInt64);
  std::vector<std::string> models;
  uint64_t seed = 1;
  for (const auto& layout : Layouts()) {
    const std::string f32 = dir / (layout.name + "-f32"), bf16 = dir / (layout.name + "-bf16");
    shears::testing::WriteRandomModel(f32, layout.config, seed++);
    shears::testing::RewriteModel(f32, bf16, torch::kBFloat16, /*shards=*/2);
    models.push_back(f32);
    models.push_back(bf16);
  }
  ExpectLogitsAgreeWithTheReference(models, ids, dir);
}

// Trained models of each family (shears-train --config, a few hundred steps on the KJV with the
// fixture's tokenizer) agree with the reference as random ones do, and have learned something.
TEST(Families, ModelsShearsTrainMakesOfEachFamilyAgreeWithTheReference) {
  TempDir dir;
  const std::string train = dir / "train.txt";
  ASSERT_TRUE(
      WriteFileAtomically(train, ReadFile(shears::testing::KjvSplitsDir() + "/train.txt").value().substr(0, 200000))
          .ok());
  const std::set<std::string> wanted = {"Llama31RopeLlama3", "MistralNemoHeadDimWindow",
                                        "Qwen25WindowFromMaxWindowLayers", "Qwen3LayerTypes", "Gemma2SoftCapsWindow",
                                        "Gemma3PatternTwoRopes", "Phi4MiniPartialRotaryRopeParameters"};
  std::vector<std::string> models;
  for (const auto& layout : Layouts()) {
    if (wanted.count(layout.name) == 0) continue;
    SCOPED_TRACE(layout.name);
    const std::string config = dir / (layout.name + ".json"), out = dir / (layout.name + "-trained");
    ASSERT_TRUE(WriteFileAtomically(config, layout.config.dump()).ok());
    auto run = shears::testing::RunCommand(
        {std::string(SHEARS_BINARY_DIR) + "/tools/shears-train", "--config", config, "--tokenizer-dir",
         shears::testing::DataDir("tiny-llama"), "--train", train, "--valid",
         shears::testing::KjvSplitsDir() + "/valid.txt", "--out", out, "--steps", "150", "--batch", "8",
         "--seq-len", "32", "--lr", "1e-2", "--warmup", "10", "--threads", "1"},
        dir / (layout.name + ".log"));
    ASSERT_EQ(run.status, 0) << run.out;
    // The fixture's vocabulary is 2,048: a model that learned nothing sits near that.
    const size_t at = run.out.find("validation perplexity ");
    ASSERT_NE(at, std::string::npos) << run.out;
    EXPECT_LT(std::stod(run.out.substr(at + 22)), 400.0) << run.out;
    models.push_back(out);
  }
  torch::manual_seed(12);
  const auto ids = torch::randint(2048, {2, 24}, torch::kInt64);
  ExpectLogitsAgreeWithTheReference(models, ids, dir);
}

// The schedules against numbers worked out by hand from Hugging Face's formulas.
TEST(Families, RopeSchedulesMatchTheirFormulas) {
  RopeConfig llama3;
  llama3.type = RopeConfig::Type::kLlama3;
  llama3.factor = 8, llama3.low_freq_factor = 1, llama3.high_freq_factor = 4, llama3.original_max_positions = 64;
  auto inv = InverseFrequencies(llama3, 8);
  // Wavelength 2π (< 64/4) kept; 20π (between 16 and 64) blended by smooth = (64/(20π) - 1)/3;
  // 200π and 2000π (> 64) divided by 8.
  const double smooth = (64.0 / (2 * M_PI * 10) - 1.0) / 3.0;
  EXPECT_NEAR(inv[0].item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(inv[1].item<double>(), (1 - smooth) * 0.1 / 8 + smooth * 0.1, 1e-6);
  EXPECT_NEAR(inv[2].item<double>(), 0.01 / 8, 1e-8);
  EXPECT_NEAR(inv[3].item<double>(), 0.001 / 8, 1e-9);

  RopeConfig yarn;
  yarn.type = RopeConfig::Type::kYarn;
  yarn.factor = 4, yarn.original_max_positions = 16, yarn.max_positions = 64, yarn.attention_factor = 1.5;
  auto tables = RotaryTables(3, 8, yarn, torch::kCPU);
  EXPECT_NEAR(tables.cos[0][0].item<double>(), 1.5, 1e-6) << "cos(0) scaled by the attention factor";
  // With original 16 the correction range is [0, 1]: pair 0 extrapolated, pairs 1.. interpolated.
  auto yarn_inv = InverseFrequencies(yarn, 8);
  EXPECT_NEAR(yarn_inv[0].item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(yarn_inv[2].item<double>(), 0.01 / 4, 1e-8);

  // LongRoPE: frequencies divided by the short factors up to the original context, by the long
  // ones past it.
  RopeConfig longrope;
  longrope.type = RopeConfig::Type::kLongRope;
  longrope.short_factor = {1.0, 2.0}, longrope.long_factor = {4.0, 8.0}, longrope.original_max_positions = 16;
  auto short_inv = InverseFrequencies(longrope, 4, 16), long_inv = InverseFrequencies(longrope, 4, 17);
  EXPECT_NEAR(short_inv[0].item<double>(), 1.0, 1e-7);
  EXPECT_NEAR(short_inv[1].item<double>(), 0.01 / 2, 1e-9);
  EXPECT_NEAR(long_inv[0].item<double>(), 1.0 / 4, 1e-7);
  EXPECT_NEAR(long_inv[1].item<double>(), 0.01 / 8, 1e-9);

  // Partial rotary: tables for the leading 4 of 8 dimensions rotate those, the rest pass.
  const auto x = torch::randn({1, 2, 3, 8});
  const auto rotated = ApplyRotary(x, RotaryTables(3, 4, RopeConfig{}, torch::kCPU));
  EXPECT_TRUE(torch::equal(rotated.narrow(-1, 4, 4), x.narrow(-1, 4, 4)));
  EXPECT_TRUE(torch::allclose(rotated.narrow(-1, 0, 4),
                              ApplyRotary(x.narrow(-1, 0, 4).contiguous(), RotaryTables(3, 4, RopeConfig{}, torch::kCPU))));
  EXPECT_FALSE(torch::allclose(rotated.select(2, 1).narrow(-1, 0, 4), x.select(2, 1).narrow(-1, 0, 4)));
}

// The Nemotron-NAS layout of model_layouts.cc with block `b`'s entry replaced.
nlohmann::json Nas(int b, const nlohmann::json& entry) {
  for (auto layout : Layouts()) {
    if (layout.name != "NemotronNasPerBlockShapes") continue;
    layout.config["block_configs"][b] = entry;
    return layout.config;
  }
  return {};
}

// Each block's shape from block_configs: KV heads from n_heads_in_group, the FFN width from
// intermediate_size or from ffn_mult as NVIDIA's and vLLM's code round it, 0 for a no_op.
TEST(Families, NemotronNasBlockConfigsGiveEachBlockItsShape) {
  auto config = ModelConfig::Parse(Nas(0, {{"attention", {{"n_heads_in_group", 1}}}, {"ffn", {{"ffn_mult", 1.3}}}}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->family, Family::kLlama);
  EXPECT_EQ(config->block_kv_heads, (std::vector<int64_t>{4, 1, 0}));
  EXPECT_EQ(config->block_ffn, (std::vector<int64_t>{256, 0, 256})) << "int(2 · 1.3 · 32 / 3) = 27, rounded up to 256";
  EXPECT_EQ(config->kv_heads, 4);
  EXPECT_EQ(config->ffn, 256);
  EXPECT_EQ(config->rope.type, RopeConfig::Type::kLlama3);
  auto wide = Nas(0, {{"attention", {{"n_heads_in_group", 2}}}, {"ffn", {{"ffn_mult", 1.3}}}});
  wide["hidden_size"] = 4096;
  wide["num_attention_heads"] = 32;
  config = ModelConfig::Parse(wide);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->block_ffn[0], 3584) << "int(2 · 1.3 · 4096 / 3) = 3549, rounded up to a multiple of 256";
  EXPECT_EQ(config->block_kv_heads[0], 16);
  // Without ffn_mult, intermediate_size as it is.
  config = ModelConfig::Parse(Nas(0, {{"attention", {{"n_heads_in_group", 4}}}, {"ffn", {{"intermediate_size", 40}}}}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->block_ffn[0], 40);
  EXPECT_EQ(config->block_kv_heads[0], 1);
}

TEST(Families, WhatIsNotBuiltIsRefusedNamingTheField) {
  struct Case {
    nlohmann::json config;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"model_type", "mixtral"}}, "config.json: model_type 'mixtral' is not supported (supported: llama, mistral, "
                                    "qwen2, qwen3, gemma2, gemma3_text, phi3, gpt2, opt, nemotron-nas)"},
      {{{"model_type", "phimoe"}}, "config.json: model_type 'phimoe' is not supported"},
      {{{"model_type", "qwen2_moe"}}, "config.json: model_type 'qwen2_moe' is not supported"},
      {{{"model_type", "qwen3_moe"}}, "config.json: model_type 'qwen3_moe' is not supported"},
      {{{"model_type", "deepseek_v3"}}, "config.json: model_type 'deepseek_v3' is not supported"},
      {Config("llama", {{"num_local_experts", 8}}), "config.json: num_local_experts 8 is not supported"},
      {Config("llama", {{"rope_scaling", {{"rope_type", "su"}, {"short_factor", {1}}, {"long_factor", {1}}}}}),
       "config.json: rope_scaling.rope_type 'su' is not supported (supported: default, linear, dynamic, yarn, "
       "llama3, longrope)"},
      {Config("llama", {{"rope_scaling", {{"rope_type", "longrope"}, {"short_factor", {1, 1, 1}}, {"long_factor", {1}}}}}),
       "config.json: rope_scaling.short_factor must list 4 positive numbers, one for each rotated pair of the 8 "
       "dimensions of a head that rotate"},
      {Config("phi3", {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}}),
       "config.json: rope_scaling.rope_type 'linear' is not supported (supported: default, longrope (su, yarn: its "
       "old names))"},
      {Config("phi3", {{"partial_rotary_factor", 0.375}}),
       "config.json: partial_rotary_factor 0.375 leaves 3 of the 8 dimensions of a head to rotate; it must be in "
       "(0, 1] and leave an even number of at least 2"},
      {Config("phi3", {{"partial_rotary_factor", 0.5}, {"rope_scaling", {{"type", "longrope"}, {"short_factor", {1, 1, 1, 1}}, {"long_factor", {1, 1, 1, 1}}}}}),
       "config.json: rope_scaling.short_factor must list 2 positive numbers"},
      {Config("phi3", {{"rope_scaling", {{"type", "longrope"}, {"short_factor", {1, 1, 1, 0}}, {"long_factor", {1, 1, 1, 1}}}}}),
       "config.json: rope_scaling.short_factor must list 4 positive numbers"},
      {Config("phi3", {{"hidden_act", "gelu_new"}}), "config.json: hidden_act 'gelu_new' is not supported (supported: silu)"},
      {Config("llama", {{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}}}),
       "config.json: rope_scaling.low_freq_factor is required"},
      {Config("llama", {{"rope_scaling", {{"rope_type", "linear"}, {"factor", 0.5}}}}),
       "config.json: rope_scaling.factor must be at least 1, got 0.5"},
      {Config("llama", {{"hidden_act", "gelu"}}), "config.json: hidden_act 'gelu' is not supported (supported: silu)"},
      {Config("llama", {{"partial_rotary_factor", 0.5}}),
       "config.json: partial_rotary_factor 0.5 is not supported (supported: 1)"},
      {Config("qwen3", {{"layer_types", {"full_attention", "chunked_attention", "full_attention"}}}),
       "config.json: layer_types[1] 'chunked_attention' is not supported (supported: full_attention, "
       "sliding_attention)"},
      {Nas(1, {{"attention", {{"replace_with_linear", true}, {"n_heads_in_group", 2}}}, {"ffn", {{"intermediate_size", 8}}}}),
       "config.json: block_configs[1].attention.replace_with_linear is not supported (vLLM does not serve it either)"},
      {Nas(1, {{"attention", {{"n_heads_in_group", 2}}}, {"ffn", {{"replace_with_linear", true}}}}),
       "config.json: block_configs[1].ffn.replace_with_linear is not supported"},
      {Nas(2, {{"attention", {{"n_heads_in_group", 3}}}, {"ffn", {{"intermediate_size", 8}}}}),
       "config.json: block_configs[2].attention.n_heads_in_group must be a positive divisor of num_attention_heads (4)"},
      {Nas(0, {{"attention", {{"n_heads_in_group", 2}, {"window_length", 128}}}, {"ffn", {{"intermediate_size", 8}}}}),
       "config.json: block_configs[0].attention.window_length is not supported (full attention only)"},
      {Nas(0, {{"attention", {{"n_heads_in_group", 2}}}, {"ffn", {{"no_op", false}}}}),
       "config.json: block_configs[0].ffn needs a positive intermediate_size or ffn_mult"},
      {Nas(0, {{"attention", {{"no_op", "yes"}}}, {"ffn", {{"intermediate_size", 8}}}}),
       "config.json: block_configs[0].attention.no_op must be true or false"},
      {Nas(0, {{"ffn", {{"intermediate_size", 8}}}}), "config.json: block_configs[0] must be an object with attention and ffn"},
      {Config("nemotron-nas", {{"block_configs", nlohmann::json::array()}}),
       "config.json: block_configs must list one entry for each of the 3 blocks"},
  };
  for (const auto& c : cases) {
    auto arch = MakeArchitecture(c.config);
    ASSERT_FALSE(arch.ok()) << c.message;
    EXPECT_EQ(arch.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(arch.status().message()).substr(0, c.message.size()), c.message);
  }
}

// The config.json of Phi-3-mini-128k-instruct and of Phi-4-mini-instruct as published (the
// fields the engine reads; the 48 LongRoPE factors of each list replaced by made-up ones), read as
// Phi3Config and modeling_rope_utils read them.
TEST(Families, PublishedPhiConfigsReadAsTransformersReadsThem) {
  auto factors = [](double base) {
    std::vector<double> out;
    for (int i = 0; i < 48; ++i) out.push_back(base + 0.01 * i);
    return out;
  };
  const nlohmann::json phi3_mini = {
      {"architectures", {"Phi3ForCausalLM"}}, {"model_type", "phi3"}, {"hidden_act", "silu"},
      {"hidden_size", 3072}, {"intermediate_size", 8192}, {"num_hidden_layers", 32}, {"num_attention_heads", 32},
      {"num_key_value_heads", 32}, {"max_position_embeddings", 131072}, {"original_max_position_embeddings", 4096},
      {"rms_norm_eps", 1e-05}, {"rope_theta", 10000.0}, {"sliding_window", 262144}, {"tie_word_embeddings", false},
      {"vocab_size", 32064}, {"attention_bias", false},
      {"rope_scaling", {{"type", "longrope"}, {"short_factor", factors(1.0)}, {"long_factor", factors(1.5)}}}};
  auto mini = ModelConfig::Parse(phi3_mini);
  ASSERT_TRUE(mini.ok()) << mini.status();
  EXPECT_EQ(mini->family, Family::kPhi3);
  EXPECT_EQ(mini->head_dim, 96);
  EXPECT_EQ(mini->rotary_dim, 96);
  EXPECT_EQ(mini->rope.type, RopeConfig::Type::kLongRope);
  EXPECT_EQ(mini->rope.original_max_positions, 4096);
  EXPECT_NEAR(mini->rope.attention_factor, std::sqrt(1 + std::log(32.0) / std::log(4096.0)), 1e-12);
  EXPECT_EQ(mini->WindowOf(31), 262144);

  nlohmann::json phi4_mini = phi3_mini;
  phi4_mini.update({{"num_attention_heads", 24}, {"num_key_value_heads", 8}, {"partial_rotary_factor", 0.75},
                    {"tie_word_embeddings", true}, {"vocab_size", 200064}, {"intermediate_size", 8192}});
  auto phi4 = ModelConfig::Parse(phi4_mini);
  ASSERT_TRUE(phi4.ok()) << phi4.status();
  EXPECT_EQ(phi4->head_dim, 128);
  EXPECT_EQ(phi4->rotary_dim, 96) << "int(128 * 0.75); 48 factors a list";
  EXPECT_TRUE(phi4->tie_embeddings);
  auto arch = MakeArchitecture(phi4_mini);
  ASSERT_TRUE(arch.ok()) << arch.status();
  std::vector<std::vector<int64_t>> stored;
  for (const auto& spec : (*arch)->StoredBlockTensors(0)) {
    if (spec.name == "self_attn.qkv_proj.weight" || spec.name == "mlp.gate_up_proj.weight") stored.push_back(spec.shape);
  }
  EXPECT_EQ(stored, (std::vector<std::vector<int64_t>>{{(24 + 2 * 8) * 128, 3072}, {2 * 8192, 3072}}));
}

// Qwen2 and Qwen3 configs write a sliding_window they apply only with use_sliding_window.
TEST(Families, QwensWindowIsUsedOnlyWhenAskedFor) {
  TempDir dir;
  const auto base = Config("qwen2", {{"max_window_layers", 0}});
  shears::testing::WriteRandomModel(dir / "m", base, 4);
  torch::manual_seed(3);
  const auto ids = torch::randint(kVocab, {1, 12}, torch::kInt64);
  auto logits_with = [&](const nlohmann::json& extra) {
    auto config = base;
    config.update(extra);
    EXPECT_TRUE(WriteFileAtomically(dir / "m/config.json", config.dump()).ok());
    return EngineLogits(dir / "m", ids);
  };
  const auto full = logits_with({{"sliding_window", nullptr}});
  EXPECT_TRUE(torch::equal(logits_with({{"sliding_window", 2}, {"use_sliding_window", false}}), full));
  EXPECT_FALSE(torch::allclose(logits_with({{"sliding_window", 2}, {"use_sliding_window", true}}), full));
}

TEST(Families, ABiasTheConfigNamesMustBeInTheFiles) {
  TempDir dir;
  shears::testing::WriteRandomModel(dir / "m", Config("llama"), 3);
  auto config = nlohmann::json::parse(ReadFile(dir / "m/config.json").value());
  config["attention_bias"] = true;
  auto model = ModelDir::Open(dir / "m");
  auto arch = MakeArchitecture(config);
  ASSERT_TRUE(model.ok() && arch.ok());
  const absl::Status st = (*arch)->CheckWeights(**model);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("tensor model.layers.0.self_attn.q_proj.bias is missing"), std::string::npos) << st;
}

// Dynamic NTK differs between Hugging Face versions past max_position_embeddings: the engine
// holds windows to it, as for a model with learned positions.
TEST(Families, DynamicRopeHoldsWindowsToMaxPositionEmbeddings) {
  auto config = ModelConfig::Parse(Config("llama", {{"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 4.0}}}}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->max_positions, 64);
  EXPECT_EQ(ModelConfig::Parse(Config("llama"))->max_positions, 0);
}

}  // namespace
}  // namespace shears::engine
