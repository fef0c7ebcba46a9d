// Pruning jobs on small models of today's Llama-shaped, Gemma and Phi-3 layouts: Wanda and SparseGPT on
// each, and the structured rewrites that cut what the family has (MLP biases, per-layer window
// lists, Gemma's layer pattern). Each written model is read back by the reference forward pass
// (tests/reference/hf_llama.py, hf_gemma.py, nemotron_nas.py), whose perplexity must equal the one
// the job reports.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/support/model_builders.h"
#include "tests/support/model_layouts.h"
#include "tests/support/process.h"
#include "tests/support/pruned_model_checks.h"
#include "tests/support/references.h"
#include "tests/support/test_util.h"
#include "worker/engine/prune_model.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::Config;
using shears::testing::StoredTensor;
using shears::testing::TempDir;

constexpr int64_t kSeqLen = 32, kEvalTokens = 1024;

class FamilyJobs : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(5);
    const auto ids = torch::randint(shears::testing::kLayoutVocab, {4096}, torch::kInt64);
    const auto u16 = ids.to(torch::kInt16).contiguous();
    std::string bytes(4096 * 2, '\0');
    std::memcpy(bytes.data(), u16.data_ptr(), bytes.size());
    ASSERT_TRUE(WriteFileAtomically(dir_ / "ids.bin", bytes).ok());
    // The evaluation windows as the reference reads them: the first kEvalTokens ids, as int64.
    const auto windows = ids.slice(0, 0, kEvalTokens).contiguous();
    std::string raw(kEvalTokens * sizeof(int64_t), '\0');
    std::memcpy(raw.data(), windows.data_ptr(), raw.size());
    ASSERT_TRUE(WriteFileAtomically(dir_ / "eval.i64", raw).ok());
  }

  PruneOptions Options(const std::string& model, const std::string& out, Method method, double sparsity) {
    PruneOptions o;
    o.model_dir = model;
    o.output_dir = out;
    o.method = method;
    o.target_sparsity = sparsity;
    o.calibration = CalibrationOptions{dir_ / "ids.bin", 8, kSeqLen, 0};
    o.evaluation = EvaluationOptions{dir_ / "ids.bin", kSeqLen, kEvalTokens};
    return o;
  }

  // Runs `options`, then has the reference measure the input and the output later, in Check.
  void Prune(const std::string& name, const PruneOptions& options) {
    auto report = PruneModel(options, {});
    ASSERT_TRUE(report.ok()) << name << ": " << report.status();
    ASSERT_TRUE(report->evaluation.has_value());
    reports_[name] = *report;
    jobs_ += options.model_dir + " " + (dir_ / "eval.i64") + " " + std::to_string(kEvalTokens / kSeqLen) + " " +
             std::to_string(kSeqLen) + " " + (dir_ / (name + ".dense")) + "\n";
    jobs_ += options.output_dir + " " + (dir_ / "eval.i64") + " " + std::to_string(kEvalTokens / kSeqLen) + " " +
             std::to_string(kSeqLen) + " " + (dir_ / (name + ".pruned")) + "\n";
  }

  // The reported dense and pruned perplexities against the reference's on the files.
  void CheckAgainstTheReference() {
    shears::testing::RunForwardJobs(jobs_, dir_.path());
    for (const auto& [name, report] : reports_) {
      const EvaluationReport& eval = *report.evaluation;
      const double dense = std::stod(ReadFile(dir_ / (name + ".dense.ppl")).value());
      const double pruned = std::stod(ReadFile(dir_ / (name + ".pruned.ppl")).value());
      EXPECT_NEAR(eval.dense_perplexity / dense, 1.0, 1e-3) << name;
      EXPECT_NEAR(eval.pruned_perplexity / pruned, 1.0, 1e-3) << name;
      EXPECT_NE(eval.pruned_perplexity, eval.dense_perplexity) << name << ": something was pruned";
    }
  }

  nlohmann::json WrittenConfig(const std::string& out) {
    return nlohmann::json::parse(ReadFile(out + "/config.json").value());
  }

  TempDir dir_;
  std::string jobs_;
  std::map<std::string, PruneReport> reports_;
};

TEST_F(FamilyJobs, WandaAndSparseGptOnEveryLayoutReportThePerplexityOfTheFilesWritten) {
  uint64_t seed = 100;
  for (const auto& layout : shears::testing::Layouts()) {
    const std::string model = dir_ / layout.name;
    shears::testing::WriteRandomModel(model, layout.config, seed++);
    for (Method method : {Method::kWanda, Method::kSparseGpt}) {
      const std::string name = layout.name + (method == Method::kWanda ? "-wanda" : "-sparsegpt");
      Prune(name, Options(model, dir_ / name, method, 0.5));
      // Phi-3 stores q with k and v: each part at 50%, so the whole.
      const bool fused = layout.config["model_type"] == "phi3";
      auto q = StoredTensor(dir_ / name, fused ? "model.layers.1.self_attn.qkv_proj.weight"
                                               : "model.layers.1.self_attn.q_proj.weight");
      EXPECT_NEAR((q == 0).sum().item<double>() / double(q.numel()), 0.5, 0.02) << name;
      // Dense with zeros, and saying nothing more: vLLM refuses a sparsity_config.
      EXPECT_EQ(WrittenConfig(dir_ / name), WrittenConfig(model)) << name;
    }
  }
  CheckAgainstTheReference();
}

TEST_F(FamilyJobs, FfnNeuronsCutTheMlpBiasesWithTheirNeurons) {
  const std::string model = dir_ / "biased";
  shears::testing::WriteRandomModel(model, Config("llama", {{"mlp_bias", true}, {"attention_bias", true}}), 7);
  PruneOptions options = Options(model, dir_ / "ffn", Method::kMagnitude, 0.25);
  options.structure = Structure::kFfnNeurons;
  Prune("ffn", options);
  EXPECT_EQ(WrittenConfig(dir_ / "ffn")["intermediate_size"], 36);
  EXPECT_EQ(StoredTensor(dir_ / "ffn", "model.layers.0.mlp.gate_proj.bias").size(0), 36);
  EXPECT_EQ(StoredTensor(dir_ / "ffn", "model.layers.0.mlp.up_proj.bias").size(0), 36);
  EXPECT_EQ(StoredTensor(dir_ / "ffn", "model.layers.0.mlp.down_proj.bias").size(0), 32) << "the hidden size stays";
  options = Options(model, dir_ / "sparsellm", Method::kSparseLlm, 0.5);
  options.sparsellm.iterations = 2;
  Prune("sparsellm", options);
  CheckAgainstTheReference();
}

// Removing blocks rewrites every field that lists or counts them, so the smaller model keeps each
// remaining block's window.
TEST_F(FamilyJobs, LayerRemovalRewritesTheWindowLayouts) {
  const std::string qwen3 = dir_ / "qwen3", qwen2 = dir_ / "qwen2";
  shears::testing::WriteRandomModel(
      qwen3,
      Config("qwen3", {{"num_hidden_layers", 4},
                       {"use_sliding_window", true},
                       {"sliding_window", 3},
                       {"layer_types", {"sliding_attention", "full_attention", "sliding_attention", "full_attention"}}}),
      8);
  shears::testing::WriteRandomModel(
      qwen2, Config("qwen2", {{"num_hidden_layers", 4}, {"use_sliding_window", true}, {"sliding_window", 3},
                              {"max_window_layers", 2}}),
      9);
  for (const auto& [name, model] : {std::pair{"qwen3-layers", qwen3}, {"qwen2-layers", qwen2}}) {
    PruneOptions options = Options(model, dir_ / name, Method::kBlockInfluence, 0.5);
    options.structure = Structure::kLayers;
    Prune(name, options);
  }
  // Which two blocks go depends on their influence; what the config says must follow them.
  const std::vector<std::string> types = {"sliding_attention", "full_attention", "sliding_attention", "full_attention"};
  nlohmann::json kept_types = nlohmann::json::array();
  int kept_full = 0;  // Qwen2's blocks under max_window_layers 2 that stay
  for (int b = 0; b < 4; ++b) {
    const auto& removed = reports_["qwen3-layers"].removed_blocks;
    if (std::find(removed.begin(), removed.end(), b) == removed.end()) kept_types.push_back(types[b]);
    const auto& removed2 = reports_["qwen2-layers"].removed_blocks;
    if (b < 2 && std::find(removed2.begin(), removed2.end(), b) == removed2.end()) ++kept_full;
  }
  const auto q3 = WrittenConfig(dir_ / "qwen3-layers");
  EXPECT_EQ(q3["num_hidden_layers"], 2);
  EXPECT_EQ(q3["layer_types"], kept_types);
  const auto q2 = WrittenConfig(dir_ / "qwen2-layers");
  EXPECT_EQ(q2["num_hidden_layers"], 2);
  EXPECT_EQ(q2["max_window_layers"], kept_full);
  CheckAgainstTheReference();
}

// Gemma 3's pattern follows the block index: removing blocks writes out the kept blocks' types,
// so each keeps its window and its rope; FFN neurons cut through Gemma's GELU-tanh gate.
TEST_F(FamilyJobs, GemmaLayerRemovalWritesTheLayerTypesAndFfnNeuronsCutTheGate) {
  const std::string model = dir_ / "gemma3";
  shears::testing::WriteRandomModel(
      model,
      Config("gemma3_text", {{"num_hidden_layers", 6}, {"head_dim", 8}, {"query_pre_attn_scalar", 8},
                             {"sliding_window", 3}, {"sliding_window_pattern", 3}, {"rope_theta", 1000000.0},
                             {"rope_scaling", {{"rope_type", "linear"}, {"factor", 4.0}}}}),
      11);
  PruneOptions options = Options(model, dir_ / "gemma-layers", Method::kBlockInfluence, 0.5);
  options.structure = Structure::kLayers;
  Prune("gemma-layers", options);
  nlohmann::json kept = nlohmann::json::array();
  const auto& removed = reports_["gemma-layers"].removed_blocks;
  for (int b = 0; b < 6; ++b) {
    if (std::find(removed.begin(), removed.end(), b) == removed.end()) {
      kept.push_back(b % 3 == 2 ? "full_attention" : "sliding_attention");
    }
  }
  const auto written = WrittenConfig(dir_ / "gemma-layers");
  EXPECT_EQ(written["num_hidden_layers"], 3);
  EXPECT_EQ(written["layer_types"], kept);

  options = Options(model, dir_ / "gemma-ffn", Method::kMagnitude, 0.25);
  options.structure = Structure::kFfnNeurons;
  Prune("gemma-ffn", options);
  EXPECT_EQ(WrittenConfig(dir_ / "gemma-ffn")["intermediate_size"], 36);
  CheckAgainstTheReference();
}

TEST_F(FamilyJobs, LowRankWithDenseOutputOnQwen3) {
  const std::string model = dir_ / "qwen3";
  shears::testing::WriteRandomModel(model, Config("qwen3", {{"attention_bias", true}, {"tie_word_embeddings", true}}),
                                    10);
  PruneOptions options = Options(model, dir_ / "low-rank", Method::kLowRank, 0.3);
  options.structure = Structure::kRank;
  options.low_rank.dense_output = true;
  Prune("low-rank", options);
  CheckAgainstTheReference();
}

// What a loader of the Nemotron-NAS layout sees of each block of the model in `dir` through the
// configuration class written beside its config.json (tests/reference/decilm_config.py): {KV
// heads, FFN width}, 0 for a removed sublayer; the class must write block_configs back unchanged.
std::vector<std::vector<int64_t>> DeciLmBlocks(const std::string& dir) {
  auto run = shears::testing::RunCommand(
      {"/usr/bin/python3", std::string(SHEARS_SOURCE_DIR) + "/tests/reference/decilm_config.py", dir}, dir + ".decilm.log");
  EXPECT_EQ(run.status, 0) << run.out;
  auto seen = nlohmann::json::parse(run.out.substr(run.out.find('{')), nullptr, false);
  if (seen.is_discarded()) return {};
  EXPECT_EQ(seen["round_trip"], true) << run.out;
  return seen["blocks"].get<std::vector<std::vector<int64_t>>>();
}

// Blocks left with different FFN widths, by a Llama's per-block shares (the predictor search's
// FFN mode) and by global allocation or GUM on a Nemotron-NAS model: the Nemotron-NAS layout with
// its configuration class, the widths in the files, and the reference reader's perplexity of the
// written model the reported one. A Llama whose blocks stay alike keeps its own config.
TEST_F(FamilyJobs, PerBlockFfnWidthsAreWrittenInTheNemotronNasLayout) {
  const std::string llama = dir_ / "llama";
  shears::testing::WriteRandomModel(llama, Config("llama", {{"attention_bias", true}, {"mlp_bias", true}}), 21);
  PruneOptions shares = Options(llama, dir_ / "shares", Method::kMagnitude, 0.25);
  shares.structure = Structure::kFfnNeurons;
  shares.neurons_removed = {6, 18, 12};
  Prune("shares", shares);
  auto config = WrittenConfig(dir_ / "shares");
  EXPECT_EQ(config["model_type"], "nemotron-nas");
  EXPECT_EQ(config["architectures"], nlohmann::json::array({"DeciLMForCausalLM"}));
  EXPECT_EQ(config["auto_map"], nlohmann::json({{"AutoConfig", "configuration_decilm.DeciLMConfig"}}));
  EXPECT_TRUE(config["intermediate_size"].is_null());
  EXPECT_EQ(config["attention_bias"], true);
  EXPECT_EQ(config["mlp_bias"], true);
  EXPECT_EQ(DeciLmBlocks(dir_ / "shares"), (std::vector<std::vector<int64_t>>{{2, 42}, {2, 30}, {2, 36}}));
  EXPECT_EQ(StoredTensor(dir_ / "shares", "model.layers.1.mlp.down_proj.weight").size(1), 30);
  EXPECT_EQ(StoredTensor(dir_ / "shares", "model.layers.1.mlp.gate_proj.bias").size(0), 30);
  // Pruned again (Wanda, and FFN neurons uniformly): the engine reads the layout back and keeps it.
  Prune("shares-wanda", Options(dir_ / "shares", dir_ / "shares-wanda", Method::kWanda, 0.5));
  EXPECT_EQ(WrittenConfig(dir_ / "shares-wanda"), config);
  EXPECT_TRUE(fs::exists(dir_ / "shares-wanda/configuration_decilm.py"));
  PruneOptions again = Options(dir_ / "shares", dir_ / "shares-ffn", Method::kMagnitude, 0.5);
  again.structure = Structure::kFfnNeurons;
  Prune("shares-ffn", again);
  EXPECT_EQ(DeciLmBlocks(dir_ / "shares-ffn"), (std::vector<std::vector<int64_t>>{{2, 21}, {2, 15}, {2, 18}}));

  PruneOptions uniform = Options(llama, dir_ / "uniform", Method::kMagnitude, 0.25);
  uniform.structure = Structure::kFfnNeurons;
  Prune("uniform", uniform);
  EXPECT_EQ(WrittenConfig(dir_ / "uniform")["model_type"], "llama");
  EXPECT_EQ(WrittenConfig(dir_ / "uniform")["intermediate_size"], 36);
  EXPECT_FALSE(fs::exists(dir_ / "uniform/configuration_decilm.py"));

  // A Nemotron-NAS input (widths 48, none, 256): global allocation and GUM leave the FFN-less
  // block without one and give the others their own widths.
  const std::string nas = dir_ / "nas";
  for (const auto& layout : shears::testing::Layouts()) {
    if (layout.name == "NemotronNasPerBlockShapes") shears::testing::WriteRandomModel(nas, layout.config, 22);
  }
  PruneOptions global = Options(nas, dir_ / "global", Method::kMagnitude, 0.5);
  global.structure = Structure::kFfnNeurons;
  global.allocation = Allocation::kGlobal;
  Prune("global", global);
  PruneOptions gum = Options(nas, dir_ / "gum", Method::kGum, 0.5);
  gum.structure = Structure::kFfnNeurons;
  gum.fine_tune = FineTuneOptions{dir_ / "ids.bin", 8, 1e-3, 4, kSeqLen, false, -1.0};
  gum.neuron_measures = true;
  Prune("gum", gum);
  for (const char* name : {"global", "gum"}) {
    SCOPED_TRACE(name);
    const auto blocks = DeciLmBlocks(dir_ / name);
    ASSERT_EQ(blocks.size(), 3u);
    EXPECT_EQ(blocks[0][0], 2);
    EXPECT_EQ(blocks[1], (std::vector<int64_t>{1, 0}));
    EXPECT_EQ(blocks[2][0], 0);
    EXPECT_EQ(blocks[0][1] + blocks[2][1], (48 + 256) / 2);
    EXPECT_EQ(StoredTensor(dir_ / name, "model.layers.2.mlp.up_proj.weight").size(0), blocks[2][1]);
    EXPECT_EQ(reports_[name].redundancy.size(), 2u);
  }
  EXPECT_EQ(reports_["gum"].redundancy[0].ffns.size(), 2u) << "the two blocks with an FFN";
  CheckAgainstTheReference();
}

// Sublayer removal on a Llama and on a Nemotron-NAS model, by each method: no_op sublayers in
// the Nemotron-NAS layout (a block left empty removed), each written model evaluated by the
// reference reader to the reported perplexity.
TEST_F(FamilyJobs, SublayerRemovalWritesNoOpSublayersThatTheReferenceReaderEvaluates) {
  const std::string llama = dir_ / "llama";
  shears::testing::WriteRandomModel(llama, Config("llama", {{"num_hidden_layers", 4}}), 23);
  for (Method method : {Method::kBlockInfluence, Method::kLastBlocks, Method::kRandom}) {
    const std::string name = std::string("sublayers-") + (method == Method::kBlockInfluence ? "bi"
                                                          : method == Method::kLastBlocks   ? "last"
                                                                                            : "random");
    // 15% of the blocks' parameters is one sublayer of this model (attention 3104, MLP 4640 of
    // 30976), so no block is left empty and the output is the Nemotron-NAS layout.
    PruneOptions options = Options(llama, dir_ / name, method, 0.15);
    options.structure = Structure::kSublayers;
    options.seed = 5;
    Prune(name, options);
    const PruneReport& report = reports_[name];
    EXPECT_EQ(report.removed_sublayers.size(), 1u) << name;
    EXPECT_EQ(WrittenConfig(dir_ / name)["architectures"], nlohmann::json::array({"DeciLMForCausalLM"})) << name;
    const auto blocks = DeciLmBlocks(dir_ / name);
    // What the reader sees of each kept block against what the job says it removed.
    int64_t removed = 0;
    for (const auto& r : report.removed_sublayers) removed += r.parameters;
    EXPECT_EQ(report.parameters_before - report.parameters_after, removed) << name;
    ASSERT_EQ(blocks.size(), 4 - report.removed_blocks.size()) << name;
    for (size_t b = 0, kept = 0; b < 4; ++b) {
      if (std::count(report.removed_blocks.begin(), report.removed_blocks.end(), b)) continue;
      bool attention = true, mlp = true;
      for (const auto& r : report.removed_sublayers) {
        if (r.block == int(b)) (r.sublayer == "attention" ? attention : mlp) = false;
      }
      EXPECT_EQ(blocks[kept][0] > 0, attention) << name << " block " << b;
      EXPECT_EQ(blocks[kept][1] > 0, mlp) << name << " block " << b;
      ++kept;
    }
  }
  // The Nemotron-NAS fixture (block 1 without FFN, block 2 without attention): the last blocks'
  // sublayers go first, block 2's 256-wide FFN alone leaving block 2 empty.
  const std::string nas = dir_ / "nas";
  for (const auto& layout : shears::testing::Layouts()) {
    if (layout.name == "NemotronNasPerBlockShapes") shears::testing::WriteRandomModel(nas, layout.config, 24);
  }
  PruneOptions options = Options(nas, dir_ / "nas-sublayers", Method::kLastBlocks, 0.5);
  options.structure = Structure::kSublayers;
  Prune("nas-sublayers", options);
  EXPECT_EQ(reports_["nas-sublayers"].removed_blocks, std::vector<int>{2});
  EXPECT_EQ(DeciLmBlocks(dir_ / "nas-sublayers"), (std::vector<std::vector<int64_t>>{{2, 48}, {1, 0}}));

  // Qwen3's q/k norms have no Nemotron-NAS form: refused before any work, naming the structure.
  const std::string qwen3 = dir_ / "qwen3";
  shears::testing::WriteRandomModel(qwen3, Config("qwen3", nlohmann::json::object()), 25);
  options = Options(qwen3, dir_ / "qwen3-sublayers", Method::kLastBlocks, 0.3);
  options.structure = Structure::kSublayers;
  auto refused = PruneModel(options, {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("model_type qwen3 is not one of them"), std::string::npos)
      << refused.status();
  CheckAgainstTheReference();
}

// Attention heads: on every layout, half the KV groups of each block by their contribution to the
// attention output, written in the family's own config with fewer heads and an explicit head_dim;
// on a Llama with as many KV heads as query heads, KV heads merged in one block of three (the
// Nemotron-NAS layout). The reference reads each at the reported perplexity.
TEST_F(FamilyJobs, HeadPruningWritesFewerHeadsOrPerBlockKvHeadsThatTheReferenceEvaluates) {
  uint64_t seed = 300;
  for (const auto& layout : shears::testing::Layouts()) {
    const std::string model = dir_ / layout.name;
    shears::testing::WriteRandomModel(model, layout.config, seed++);
    const std::string name = layout.name + "-heads";
    PruneOptions options = Options(model, dir_ / name, Method::kActivation, 0.5);
    options.structure = Structure::kAttentionHeads;
    if (layout.name == "NemotronNasPerBlockShapes") {  // KV heads 2, 1 and none: merged per block
      options.allocation = Allocation::kGlobal;
      options.target_sparsity = 0.08;  // block 0's one merge is 9.1% of the attention parameters
      Prune(name, options);
      EXPECT_EQ(DeciLmBlocks(dir_ / name), (std::vector<std::vector<int64_t>>{{1, 48}, {1, 0}, {0, 256}}));
      continue;
    }
    Prune(name, options);
    const nlohmann::json input = layout.config, written = WrittenConfig(dir_ / name);
    const int64_t kv = input.value("num_key_value_heads", 2);
    EXPECT_EQ(written["num_key_value_heads"], kv / 2) << name;
    EXPECT_EQ(written["num_attention_heads"], input["num_attention_heads"].get<int64_t>() / 2) << name;
    EXPECT_EQ(written["head_dim"], input.value("head_dim", input["hidden_size"].get<int64_t>() / input["num_attention_heads"].get<int64_t>())) << name;
    EXPECT_EQ(written["model_type"], input["model_type"]) << name;
    EXPECT_FALSE(written.contains("block_configs")) << name;
    EXPECT_NEAR(reports_[name].achieved_sparsity(), 0.5, 0.02) << name;
  }
  const std::string mha = dir_ / "mha";
  shears::testing::WriteRandomModel(mha, Config("llama", {{"num_key_value_heads", 4}}), seed++);
  PruneOptions options = Options(mha, dir_ / "mha-merged", Method::kMagnitude, 0.1);
  options.structure = Structure::kAttentionHeads;
  options.allocation = Allocation::kGlobal;
  Prune("mha-merged", options);
  const auto blocks = DeciLmBlocks(dir_ / "mha-merged");
  ASSERT_EQ(blocks.size(), 3u);
  int merged = 0;
  for (const auto& b : blocks) merged += b[0] < 4;
  EXPECT_EQ(merged, 1);
  CheckAgainstTheReference();
}

// Width alignment on a Nemotron-NAS model by global allocation: each kept FFN a multiple.
TEST_F(FamilyJobs, AlignedGlobalWidthsOnANemotronNasModel) {
  const std::string nas = dir_ / "nas";
  for (const auto& layout : shears::testing::Layouts()) {
    if (layout.name == "NemotronNasPerBlockShapes") shears::testing::WriteRandomModel(nas, layout.config, 26);
  }
  PruneOptions options = Options(nas, dir_ / "aligned", Method::kMagnitude, 0.4);
  options.structure = Structure::kFfnNeurons;
  options.allocation = Allocation::kGlobal;
  options.width_multiple = 16;
  Prune("aligned", options);
  const auto blocks = DeciLmBlocks(dir_ / "aligned");
  ASSERT_EQ(blocks.size(), 3u);
  EXPECT_EQ(blocks[1][1], 0);
  EXPECT_EQ(blocks[0][1] % 16, 0);
  EXPECT_EQ(blocks[2][1] % 16, 0);
  EXPECT_DOUBLE_EQ(reports_["aligned"].achieved_sparsity(), 1.0 - double(blocks[0][1] + blocks[2][1]) / (48 + 256));
  CheckAgainstTheReference();
}

}  // namespace
}  // namespace shears::engine
