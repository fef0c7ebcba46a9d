// Attention-head pruning: KV groups removed alike in every block (the family's own config with
// fewer heads) or KV heads merged per block (the Nemotron-NAS layout, or the stock config when
// every block ends alike), checked on files on disk and on what the written model computes.
#include "worker/engine/structured/attention_heads.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "common/files.h"
#include "tests/support/model_layouts.h"
#include "tests/support/model_builders.h"
#include "tests/support/process.h"
#include "tests/support/pruned_model_checks.h"
#include "tests/support/test_util.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/prune_model.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::Config;
using shears::testing::DataDir;
using shears::testing::KjvSplitsDir;
using shears::testing::StoredTensor;
using shears::testing::TempDir;

constexpr int kBlocks = 3, kHeadDim = 8;

std::string Layer(int b, const std::string& name) { return "model.layers." + std::to_string(b) + "." + name; }

class AttentionHeads : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(11);
    const auto ids = torch::randint(shears::testing::kLayoutVocab, {4096}, torch::kInt64).to(torch::kInt16).contiguous();
    std::string bytes(4096 * 2, '\0');
    std::memcpy(bytes.data(), ids.data_ptr(), bytes.size());
    ASSERT_TRUE(WriteFileAtomically(dir_ / "ids.bin", bytes).ok());
  }

  // A random llama (hidden 32, 4 heads of 8) with `kv` KV heads, its tensors passed through `edit`.
  std::string Model(const std::string& name, int kv, const std::function<void(const std::string&, torch::Tensor&)>& edit,
                    const std::string& model_type = "llama") {
    const std::string dir = dir_ / name;
    shears::testing::WriteRandomModel(dir, Config(model_type, {{"num_key_value_heads", kv}}), 21);
    auto model = ModelDir::Open(dir);
    EXPECT_TRUE(model.ok());
    NamedTensors tensors;
    for (const auto& info : (*model)->files()[0]->tensors()) {
      auto t = LoadTensor(*(*model)->files()[0], info);
      edit(info.name, t);
      tensors.emplace_back(info.name, t);
    }
    model->reset();
    EXPECT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
    return dir;
  }

  PruneOptions Options(const std::string& model, const std::string& out, Method method, double target,
                       Allocation allocation = Allocation::kUniform, bool calibrated = true) {
    PruneOptions o;
    o.model_dir = model;
    o.output_dir = dir_ / out;
    o.method = method;
    o.structure = Structure::kAttentionHeads;
    o.allocation = allocation;
    o.target_sparsity = target;
    if (calibrated) o.calibration = CalibrationOptions{dir_ / "ids.bin", 8, 32, 0};
    o.evaluation = EvaluationOptions{dir_ / "ids.bin", 32, 2048};
    return o;
  }

  nlohmann::json Written(const std::string& out) {
    return nlohmann::json::parse(ReadFile(dir_ / (out + "/config.json")).value());
  }

  TempDir dir_;
};

// In block b, KV group b % 2 (query heads 2s and 2s+1, KV head s) adds nothing to the output (its
// o_proj columns are zero) though its q, k and v weights are the largest.
void SilenceOneGroup(const std::string& name, torch::Tensor& t) {
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t s = b % 2, q = 2 * kHeadDim;
    if (name == Layer(b, "self_attn.o_proj.weight")) t.slice(1, s * q, (s + 1) * q).zero_();
    if (name == Layer(b, "self_attn.q_proj.weight")) t.slice(0, s * q, (s + 1) * q).mul_(4);
    if (name == Layer(b, "self_attn.k_proj.weight") || name == Layer(b, "self_attn.v_proj.weight")) {
      t.slice(0, s * kHeadDim, (s + 1) * kHeadDim).mul_(4);
    }
  }
}

TEST_F(AttentionHeads, ActivationRemovesTheGroupsThatAddNothingAndMagnitudeTheSmallest) {
  const std::string model = Model("silenced", 2, SilenceOneGroup);
  auto activation = PruneModel(Options(model, "activation", Method::kActivation, 0.5), {});
  ASSERT_TRUE(activation.ok()) << activation.status();
  auto magnitude = PruneModel(Options(model, "magnitude", Method::kMagnitude, 0.5), {});
  ASSERT_TRUE(magnitude.ok()) << magnitude.status();

  for (const std::string out : {"activation", "magnitude"}) {
    const auto config = Written(out);
    EXPECT_EQ(config["model_type"], "llama") << out;
    EXPECT_FALSE(config.contains("block_configs")) << out;
    EXPECT_EQ(config["num_attention_heads"], 2) << out;
    EXPECT_EQ(config["num_key_value_heads"], 1) << out;
    EXPECT_EQ(config["head_dim"], kHeadDim) << out;
    EXPECT_EQ(config["hidden_size"], 32) << out;
  }
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t silent = b % 2, other = 1 - silent, q = 2 * kHeadDim;
    const auto input_q = StoredTensor(model, Layer(b, "self_attn.q_proj.weight"));
    const auto input_o = StoredTensor(model, Layer(b, "self_attn.o_proj.weight"));
    const auto input_v = StoredTensor(model, Layer(b, "self_attn.v_proj.weight"));
    // Activation keeps the other group's rows and columns bit for bit; magnitude the silent one's.
    EXPECT_TRUE(StoredTensor(dir_ / "activation", Layer(b, "self_attn.q_proj.weight")).equal(input_q.slice(0, other * q, (other + 1) * q))) << b;
    EXPECT_TRUE(StoredTensor(dir_ / "activation", Layer(b, "self_attn.o_proj.weight")).equal(input_o.slice(1, other * q, (other + 1) * q))) << b;
    EXPECT_TRUE(StoredTensor(dir_ / "activation", Layer(b, "self_attn.v_proj.weight"))
                    .equal(input_v.slice(0, other * kHeadDim, (other + 1) * kHeadDim))) << b;
    EXPECT_TRUE(StoredTensor(dir_ / "magnitude", Layer(b, "self_attn.q_proj.weight")).equal(input_q.slice(0, silent * q, (silent + 1) * q))) << b;
  }
  // What activation removed contributed nothing: the written model computes what the input did.
  EXPECT_NEAR(activation->evaluation->pruned_perplexity, activation->evaluation->dense_perplexity,
              1e-5 * activation->evaluation->dense_perplexity);
  EXPECT_GT(std::abs(magnitude->evaluation->pruned_perplexity / magnitude->evaluation->dense_perplexity - 1), 1e-3);
  // Half of q, k, v and o of every block: exactly half the attention parameters (no biases or norms).
  EXPECT_EQ(activation->parameters_before, kBlocks * 4 * 32 * 32 - kBlocks * 2 * 16 * 32);
  EXPECT_EQ(activation->parameters_after * 2, activation->parameters_before);
  EXPECT_EQ(activation->model_parameters_before - activation->model_parameters_after,
            activation->parameters_before - activation->parameters_after);
  ASSERT_EQ(activation->layers.size(), size_t{kBlocks});
  EXPECT_EQ(activation->layers[1].name, "model.layers.1.self_attn");
}

TEST_F(AttentionHeads, RandomGroupsFollowTheSeedAndWidthMultipleRoundsTheKvHeadsKept) {
  const std::string model = Model("mha", 4, [](const std::string&, torch::Tensor&) {});
  auto a = PruneModel(Options(model, "a", Method::kRandom, 0.7, Allocation::kUniform, false), {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(Written("a")["num_key_value_heads"], 1);  // round(0.7 × 4) = 3 of 4 removed
  EXPECT_EQ(Written("a")["num_attention_heads"], 1);
  PruneOptions aligned = Options(model, "aligned", Method::kRandom, 0.7, Allocation::kUniform, false);
  aligned.width_multiple = 2;
  auto b = PruneModel(aligned, {});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(Written("aligned")["num_key_value_heads"], 2);
  EXPECT_DOUBLE_EQ(double(b->parameters_after) / double(b->parameters_before), 0.5);
  shears::testing::ExpectReproducibleBySeed(Options(model, "unused", Method::kRandom, 0.5, Allocation::kUniform, false),
                                            dir_ / "seeds");
}

// KV heads 2i and 2i+1 of every block are equal, so merging them loses nothing.
void PairKvHeads(const std::string& name, torch::Tensor& t) {
  if (!absl::EndsWith(name, "self_attn.k_proj.weight") && !absl::EndsWith(name, "self_attn.v_proj.weight")) return;
  for (int i = 0; i < 2; ++i) t.slice(0, (2 * i + 1) * kHeadDim, (2 * i + 2) * kHeadDim).copy_(t.slice(0, 2 * i * kHeadDim, (2 * i + 1) * kHeadDim));
}

TEST_F(AttentionHeads, MergingEqualKvHeadsIsLosslessInTheStockOrTheNemotronNasLayout) {
  const std::string model = Model("paired", 4, PairKvHeads);
  // A quarter of the attention parameters: every block 4 -> 2 KV heads, the stock GQA config.
  for (bool calibrated : {false, true}) {
    const std::string out = calibrated ? "fitted" : "pooled";
    auto report = PruneModel(Options(model, out, Method::kMagnitude, 0.25, Allocation::kGlobal, calibrated), {});
    ASSERT_TRUE(report.ok()) << report.status();
    const auto config = Written(out);
    EXPECT_EQ(config["model_type"], "llama") << out;
    EXPECT_EQ(config["num_key_value_heads"], 2) << out;
    EXPECT_EQ(config["num_attention_heads"], 4) << out;
    EXPECT_NEAR(report->evaluation->pruned_perplexity, report->evaluation->dense_perplexity,
                1e-4 * report->evaluation->dense_perplexity) << out;
    EXPECT_DOUBLE_EQ(double(report->parameters_after) / double(report->parameters_before), 0.75) << out;
    const auto k = StoredTensor(model, Layer(1, "self_attn.k_proj.weight"));
    EXPECT_TRUE(torch::allclose(StoredTensor(dir_ / out, Layer(1, "self_attn.k_proj.weight")),
                                torch::cat({k.slice(0, 0, kHeadDim), k.slice(0, 2 * kHeadDim, 3 * kHeadDim)}), 1e-4, 1e-5)) << out;
  }
  // A twelfth: one block's 4 KV heads merged into 2 (a quarter of its attention), written per block
  // in the Nemotron-NAS layout. (An eighth would take that block on down to one KV head, the
  // only merge left that meets the target exactly.)
  auto report = PruneModel(Options(model, "one", Method::kActivation, 1.0 / 12, Allocation::kGlobal), {});
  ASSERT_TRUE(report.ok()) << report.status();
  const auto config = Written("one");
  EXPECT_EQ(config["architectures"], nlohmann::json::array({"DeciLMForCausalLM"}));
  int merged = 0;
  for (int b = 0; b < kBlocks; ++b) {
    const int group = config["block_configs"][b]["attention"]["n_heads_in_group"];
    EXPECT_TRUE(group == 1 || group == 2) << b;
    merged += group == 2;
    EXPECT_EQ(StoredTensor(dir_ / "one", Layer(b, "self_attn.k_proj.weight")).size(0), 4 * kHeadDim / group) << b;
  }
  EXPECT_EQ(merged, 1);
  EXPECT_NEAR(report->evaluation->pruned_perplexity, report->evaluation->dense_perplexity,
              1e-4 * report->evaluation->dense_perplexity);
  EXPECT_TRUE(fs::exists(dir_ / "one/configuration_decilm.py"));
}

// On a trained MHA model, every block's 8 KV heads merged into one (multi-query attention): the
// merge fitted to the calibration queries keeps the model better than mean pooling.
TEST_F(AttentionHeads, FittedMergeBeatsMeanPoolingOnATrainedModel) {
  const std::string model = DataDir("tiny-llama-mha");
  auto run = [&](const std::string& out, bool calibrated) {
    PruneOptions o = Options(model, out, Method::kMagnitude, 7.0 / 16.0, Allocation::kGlobal, false);
    if (calibrated) o.calibration = CalibrationOptions{KjvSplitsDir() + "/train.txt", 16, 128, 0};
    o.evaluation = EvaluationOptions{KjvSplitsDir() + "/test.txt", 64, 4096};
    auto report = PruneModel(o, {});
    EXPECT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(Written(out)["num_key_value_heads"], 1) << out;
    EXPECT_EQ(Written(out)["architectures"], nlohmann::json::array({"LlamaForCausalLM"})) << out;
    return report.ok() ? report->evaluation->pruned_perplexity : 0.0;
  };
  const double pooled = run("pooled", false), fitted = run("fitted", true);
  EXPECT_LT(fitted, pooled);
  EXPECT_NEAR(fitted, shears::testing::TestSplitPerplexity(dir_ / "fitted"), 1e-3 * fitted);
}

TEST_F(AttentionHeads, RefusesWhatCannotBeWritten) {
  auto refused = [&](PruneOptions o, const std::string& message) {
    auto report = PruneModel(o, {});
    ASSERT_FALSE(report.ok()) << message;
    EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(report.status().message(), message)) << report.status();
  };
  const std::string gqa = Model("gqa", 2, [](const std::string&, torch::Tensor&) {});
  refused(Options(gqa, "x", Method::kMagnitude, 0.8), "target_sparsity: 0.8 would remove every one of the 2 KV heads");
  PruneOptions wide = Options(gqa, "x", Method::kMagnitude, 0.5);
  wide.width_multiple = 4;
  refused(wide, "width_multiple: 4 is more than the 2 KV heads");
  // Two KV heads merge into one at most: a sixth of q, k, v, o (k and v are half as large as q).
  refused(Options(gqa, "x", Method::kMagnitude, 0.25, Allocation::kGlobal),
          "target_sparsity: merging KV heads removes at most 0.166667 of the attention parameters");
  const std::string qwen3 = Model("qwen3", 2, [](const std::string&, torch::Tensor&) {}, "qwen3");
  refused(Options(qwen3, "x", Method::kMagnitude, 0.1, Allocation::kGlobal), "allocation: ALLOCATION_GLOBAL");
  refused(Options(DataDir("tiny-gpt2"), "x", Method::kMagnitude, 0.25), "model_type gpt2 is not one of them");
}

}  // namespace
}  // namespace shears::engine
