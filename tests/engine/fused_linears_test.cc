// Phi-3 stores q, k and v as one qkv_proj and gate and up as one gate_up_proj. Every method must
// prune the matrices these stand for, and every rewrite must cut both halves of gate_up_proj with
// their neurons. The proof: a Phi-3 checkpoint holding exactly a Llama checkpoint's weights
// (stacked as Phi-3 stacks them; with full rotary and no scaling the two compute the same) is
// pruned by each method and rewrite as the Llama one is, and what is written is the Llama
// output stacked the same way, with the same report.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "common/files.h"
#include "tests/support/model_builders.h"
#include "tests/support/model_layouts.h"
#include "tests/support/pruned_model_checks.h"
#include "tests/support/test_util.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/prune_model.h"

namespace shears::engine {
namespace {

using shears::testing::TempDir;
using Tensors = std::map<std::string, torch::Tensor>;

Tensors AllTensors(const std::string& dir) {
  auto model = ModelDir::Open(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  Tensors out;
  for (const auto& file : (*model)->files()) {
    for (const auto& info : file->tensors()) out[info.name] = LoadTensor(*file, info).to(torch::kFloat32).clone();
  }
  return out;
}

// Llama's tensors as Phi-3 stores them: each block's q, k, v stacked into qkv_proj and gate, up
// into gate_up_proj, where all of a group's parts are stored whole.
Tensors StackedLikePhi3(Tensors tensors) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> groups = {
      {"self_attn.qkv_proj.weight", {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"}},
      {"mlp.gate_up_proj.weight", {"mlp.gate_proj.weight", "mlp.up_proj.weight"}}};
  for (int b = 0; b < 8; ++b) {
    const std::string prefix = "model.layers." + std::to_string(b) + ".";
    for (const auto& [fused, parts] : groups) {
      std::vector<torch::Tensor> stacked;
      for (const auto& part : parts) {
        if (tensors.count(prefix + part)) stacked.push_back(tensors.at(prefix + part));
      }
      if (stacked.size() != parts.size()) continue;
      for (const auto& part : parts) tensors.erase(prefix + part);
      tensors[prefix + fused] = torch::cat(stacked, 0);
    }
  }
  return tensors;
}

nlohmann::json ConfigOf(const std::string& dir) { return nlohmann::json::parse(ReadFile(dir + "/config.json").value()); }

class FusedLinears : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(6);
    const auto ids = torch::randint(shears::testing::kLayoutVocab, {4096}, torch::kInt16).contiguous();
    std::string bytes(4096 * 2, '\0');
    std::memcpy(bytes.data(), ids.data_ptr(), bytes.size());
    ASSERT_TRUE(WriteFileAtomically(dir_ / "ids.bin", bytes).ok());
    shears::testing::WriteRandomModel(dir_ / "llama", shears::testing::Config("llama"), 21);
    // The same weights in Phi-3's layout, its config the Llama one's under Phi-3's model_type.
    NamedTensors stacked;
    for (const auto& [name, t] : StackedLikePhi3(AllTensors(dir_ / "llama"))) stacked.emplace_back(name, t);
    ASSERT_TRUE(MakeDirectories(dir_ / "phi3").ok());
    ASSERT_TRUE(WriteSafetensors(dir_ / "phi3/model.safetensors", stacked, {{"format", "pt"}}).ok());
    nlohmann::json config = ConfigOf(dir_ / "llama");
    config["model_type"] = "phi3";
    ASSERT_TRUE(WriteFileAtomically(dir_ / "phi3/config.json", config.dump()).ok());
  }

  PruneOptions Options(Method method, Structure structure, double sparsity) {
    PruneOptions o;
    o.method = method;
    o.structure = structure;
    o.target_sparsity = sparsity;
    o.calibration = CalibrationOptions{dir_ / "ids.bin", 8, 32, 0};
    o.evaluation = EvaluationOptions{dir_ / "ids.bin", 32, 1024};
    return o;
  }

  // Runs `options` on both models; the Phi-3 output must be the Llama output stacked.
  void ExpectTheSameJob(const std::string& name, PruneOptions options) {
    SCOPED_TRACE(name);
    std::map<std::string, PruneReport> reports;
    for (const std::string family : {"llama", "phi3"}) {
      options.model_dir = dir_ / family;
      options.output_dir = dir_ / (name + "-" + family);
      auto report = PruneModel(options, {});
      ASSERT_TRUE(report.ok()) << family << ": " << report.status();
      reports[family] = *report;
    }
    const PruneReport &llama = reports["llama"], &phi3 = reports["phi3"];
    ASSERT_TRUE(llama.evaluation && phi3.evaluation);
    EXPECT_NE(llama.evaluation->pruned_perplexity, llama.evaluation->dense_perplexity) << "something was pruned";
    EXPECT_NEAR(phi3.evaluation->dense_perplexity / llama.evaluation->dense_perplexity, 1.0, 1e-6);
    EXPECT_NEAR(phi3.evaluation->pruned_perplexity / llama.evaluation->pruned_perplexity, 1.0, 1e-6);
    EXPECT_EQ(phi3.parameters_before, llama.parameters_before);
    EXPECT_EQ(phi3.parameters_after, llama.parameters_after);
    ASSERT_EQ(phi3.layers.size(), llama.layers.size());
    for (size_t i = 0; i < llama.layers.size(); ++i) {
      EXPECT_EQ(phi3.layers[i].name, llama.layers[i].name) << "the parts are reported as the linears they are";
      EXPECT_EQ(phi3.layers[i].zeros, llama.layers[i].zeros) << llama.layers[i].name;
    }
    const Tensors want = StackedLikePhi3(AllTensors(dir_ / (name + "-llama")));
    const Tensors got = AllTensors(dir_ / (name + "-phi3"));
    ASSERT_EQ(got.size(), want.size());
    for (const auto& [tensor, value] : want) {
      ASSERT_TRUE(got.count(tensor)) << tensor;
      ASSERT_EQ(got.at(tensor).sizes(), value.sizes()) << tensor;
      EXPECT_TRUE(torch::allclose(got.at(tensor), value, 0.0, 1e-6)) << tensor;
    }
    nlohmann::json written = ConfigOf(dir_ / (name + "-phi3"));
    EXPECT_EQ(written["model_type"], "phi3");
    const nlohmann::json llama_config = ConfigOf(dir_ / (name + "-llama"));
    if (llama_config["model_type"] == "nemotron-nas") {
      // Blocks of different widths: Llama's in the Nemotron-NAS layout, Phi-3's (which that layout
      // does not compute) in Shears' own list.
      EXPECT_EQ(shears::testing::WrittenFfnWidths(dir_ / (name + "-phi3")),
                shears::testing::WrittenFfnWidths(dir_ / (name + "-llama")));
    } else {
      written["model_type"] = "llama";
      EXPECT_EQ(written, llama_config);
    }
  }

  TempDir dir_;
};

TEST_F(FusedLinears, UnstructuredAndNmMethodsPruneEachPartAsTheLinearItIs) {
  ExpectTheSameJob("wanda", Options(Method::kWanda, Structure::kUnstructured, 0.5));
  ExpectTheSameJob("sparsegpt", Options(Method::kSparseGpt, Structure::kUnstructured, 0.6));
  PruneOptions nm = Options(Method::kMagnitude, Structure::kNM, 0.5);
  nm.n = 2, nm.m = 4;
  ExpectTheSameJob("magnitude-2-4", nm);
  PruneOptions sparsellm = Options(Method::kSparseLlm, Structure::kUnstructured, 0.5);
  sparsellm.sparsellm.iterations = 2;
  ExpectTheSameJob("sparsellm", sparsellm);
  // A linear of its own sparsity is named as the part it is.
  PruneOptions own = Options(Method::kMagnitude, Structure::kUnstructured, 0.5);
  own.linear_sparsity["model.layers.1.self_attn.k_proj.weight"] = 0.9;
  own.linear_sparsity["model.layers.2.mlp.up_proj.weight"] = 0.1;
  ExpectTheSameJob("own-sparsity", own);
}

TEST_F(FusedLinears, CompressedOutputsHoldTheFusedTensors) {
  PruneOptions nm = Options(Method::kWanda, Structure::kNM, 0.5);
  nm.n = 2, nm.m = 4;
  nm.format = OutputFormat::kSparse24Bitmask;
  nm.model_dir = dir_ / "phi3";
  nm.output_dir = dir_ / "phi3-2-4";
  auto report = PruneModel(nm, {});
  ASSERT_TRUE(report.ok()) << report.status();
  // The compressed tensors are the stored ones.
  auto model = ModelDir::Open(dir_ / "phi3-2-4");
  ASSERT_TRUE(model.ok()) << model.status();
  bool qkv = false;
  for (const auto& file : (*model)->files()) {
    for (const auto& info : file->tensors()) {
      EXPECT_FALSE(absl::StrContains(info.name, "q_proj")) << info.name;
      qkv |= absl::StrContains(info.name, "qkv_proj");
    }
  }
  EXPECT_TRUE(qkv);
  // Pruning it again reads it back: decompressed, it is the model the job reported on.
  PruneOptions again = Options(Method::kMagnitude, Structure::kUnstructured, 0.0);
  again.model_dir = dir_ / "phi3-2-4";
  again.output_dir = dir_ / "phi3-again";
  again.calibration.reset();
  auto measured = PruneModel(again, {});
  ASSERT_TRUE(measured.ok()) << measured.status();
  EXPECT_NEAR(measured->evaluation->dense_perplexity / report->evaluation->pruned_perplexity, 1.0, 1e-6);
}

TEST_F(FusedLinears, StructuredRewritesCutThePartsTogether) {
  ExpectTheSameJob("ffn-neurons", Options(Method::kMagnitude, Structure::kFfnNeurons, 0.25));
  PruneOptions global = Options(Method::kRandom, Structure::kFfnNeurons, 0.3);
  global.allocation = Allocation::kGlobal;
  ExpectTheSameJob("ffn-neurons-global", global);
  ExpectTheSameJob("layers", Options(Method::kBlockInfluence, Structure::kLayers, 0.34));
  ExpectTheSameJob("low-rank", Options(Method::kLowRank, Structure::kRank, 0.3));
  PruneOptions dense = Options(Method::kLowRank, Structure::kRank, 0.3);
  dense.low_rank.dense_output = true;
  ExpectTheSameJob("low-rank-dense", dense);
}

// Fine-tuning rewrites every weight: the parts are trained apart and stacked back.
TEST_F(FusedLinears, FineTunedRewritesStackTheTrainedParts) {
  PruneOptions gum = Options(Method::kGum, Structure::kFfnNeurons, 0.25);
  gum.fine_tune = FineTuneOptions{dir_ / "ids.bin", 12, 1e-3, 4, 32, false, -1.0};
  ExpectTheSameJob("gum", gum);
}

}  // namespace
}  // namespace shears::engine
