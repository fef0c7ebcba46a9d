// The engine end to end on the committed fixtures: what a user of the pruned model relies on.
#include "worker/engine/prune_model.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/sha256.h"
#include "common/job_spec.h"
#include "common/job_translation.h"
#include "tests/support/model_builders.h"
#include "tests/support/process.h"
#include "tests/support/pruned_model_checks.h"
#include "tests/support/test_util.h"
#include "worker/engine/api/job_rules.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/methods/magnitude.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/model/layers.h"
#include "worker/engine/runtime/cpu_allocator.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::DataDir;
using shears::testing::ExpectMagnitudePruned;
using shears::testing::RewriteModel;
using shears::testing::TempDir;

PruneOptions Options(const std::string& model, const std::string& out, double sparsity) {
  PruneOptions o;
  o.model_dir = model;
  o.output_dir = out;
  o.target_sparsity = sparsity;
  return o;
}

class MagnitudeOnFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(MagnitudeOnFixture, HitsTargetAndLeavesEverythingElseIdentical) {
  TempDir dir;
  const std::string model = DataDir(GetParam());
  std::vector<LayerReport> streamed;
  PruneObserver observer;
  observer.on_layer = [&](const LayerReport& l) { streamed.push_back(l); };
  auto report = PruneModel(Options(model, dir / "out", 0.5), observer);
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectMagnitudePruned(model, dir / "out", 0.5);
  EXPECT_NEAR(report->achieved_sparsity(), 0.5, 1e-3);
  EXPECT_EQ(streamed.size(), report->layers.size());
  for (const auto& l : report->layers) EXPECT_NEAR(double(l.zeros) / l.parameters, 0.5, 1.0 / l.parameters) << l.name;
  // The output is a complete model directory.
  EXPECT_EQ(ReadFile(dir / "out/config.json").value(), ReadFile(model + "/config.json").value());
  EXPECT_EQ(ReadFile(dir / "out/tokenizer.json").value(), ReadFile(model + "/tokenizer.json").value());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MagnitudeOnFixture, ::testing::Values("tiny-llama", "tiny-gpt2"),
                         [](const auto& info) { return info.param == "tiny-llama" ? "Llama" : "Gpt2"; });

struct Variant {
  std::string name;
  torch::ScalarType dtype;
  int shards;
};

class MagnitudeOnVariants : public ::testing::TestWithParam<Variant> {};

TEST_P(MagnitudeOnVariants, KeepsDTypesAndShardLayout) {
  TempDir dir;
  RewriteModel(DataDir("tiny-llama"), dir / "in", GetParam().dtype, GetParam().shards);
  auto report = PruneModel(Options(dir / "in", dir / "out", 0.7), {});
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectMagnitudePruned(dir / "in", dir / "out", 0.7);
  EXPECT_EQ(fs::exists(dir / "out/model.safetensors.index.json"), GetParam().shards > 1);
}

INSTANTIATE_TEST_SUITE_P(Layouts, MagnitudeOnVariants,
                         ::testing::Values(Variant{"F16", torch::kFloat16, 1}, Variant{"BF16", torch::kBFloat16, 1},
                                           Variant{"F32Sharded", torch::kFloat32, 3},
                                           Variant{"BF16Sharded", torch::kBFloat16, 2}),
                         [](const auto& info) { return info.param.name; });

TEST(PruneModel, ZeroSparsityCopiesTheModelUnchanged) {
  TempDir dir;
  auto report = PruneModel(Options(DataDir("tiny-llama"), dir / "out", 0.0), {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->parameters_after, report->parameters_before);
  auto in = ModelDir::Open(DataDir("tiny-llama"));
  auto out = ModelDir::Open(dir / "out");
  ASSERT_TRUE(in.ok() && out.ok());
  for (const auto& info : in.value()->files()[0]->tensors()) {
    auto a = in.value()->files()[0]->Data(info);
    const auto* o = out.value()->Find(info.name);
    ASSERT_NE(o, nullptr) << info.name;
    auto b = o->file->Data(*o->info);
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << info.name;
  }
}

double PerplexityOfModel(const std::string& dir, const torch::Tensor& windows) {
  auto model = ModelDir::Open(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  auto arch = MakeArchitecture((*model)->config());
  BlockRunner runner(**model, **arch, torch::kCPU);
  return Perplexity(runner, windows);
}

TEST(PruneModel, EvaluatesTheDenseAndThePrunedModelOnTheSameWindows) {
  TempDir dir;
  PruneOptions options = Options(DataDir("tiny-llama"), dir / "out", 0.5);
  options.evaluation = EvaluationOptions{shears::testing::KjvSplitsDir() + "/test.txt", 64, 4000};
  std::vector<std::string> stages;
  PruneObserver observer;
  observer.on_progress = [&](const std::string& stage, double, const std::string&) { stages.push_back(stage); };
  auto report = PruneModel(options, observer);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->evaluation.has_value());
  const auto& e = *report->evaluation;
  EXPECT_EQ(e.windows, 4000 / 64);
  EXPECT_EQ(e.predicted_tokens, e.windows * 63);
  EXPECT_NE(std::find(stages.begin(), stages.end(), "evaluating"), stages.end());

  // The same numbers as a separate run over each model directory.
  auto tokenizer = LoadTokenizer(DataDir("tiny-llama"));
  auto ids = LoadTokenIds(options.evaluation->path, tokenizer->get(), 2048);
  auto windows = EvaluationWindows(*ids, 64, 4000);
  ASSERT_TRUE(windows.ok());
  EXPECT_NEAR(e.dense_perplexity / PerplexityOfModel(DataDir("tiny-llama"), *windows), 1.0, 1e-5);
  EXPECT_NEAR(e.pruned_perplexity / PerplexityOfModel(dir / "out", *windows), 1.0, 1e-5);
  EXPECT_GT(e.pruned_perplexity, e.dense_perplexity * 1.05) << "half the weights gone costs something";
}

TEST(PruneModel, EvaluationErrorsNameTheData) {
  TempDir dir;
  PruneOptions options = Options(DataDir("tiny-gpt2"), dir / "out", 0.5);
  options.evaluation = EvaluationOptions{shears::testing::KjvSplitsDir() + "/test.txt", 4096, 0};
  auto too_long = PruneModel(options, {});
  EXPECT_NE(too_long.status().message().find("seq_len 4096 exceeds the model's 1024 positions"), std::string::npos)
      << too_long.status();
  options.evaluation = EvaluationOptions{dir / "missing.txt", 64, 0};
  EXPECT_EQ(PruneModel(options, {}).status().code(), absl::StatusCode::kNotFound);
}

// A calibrated method that records the Gram matrix of every linear's inputs, then prunes by
// magnitude so that later blocks must see the pruned earlier ones.
struct Recording {
  std::map<int, std::map<std::string, torch::Tensor>> grams;  // block -> linear -> XᵀX
};

class RecordingMethod final : public PruningMethod {
 public:
  explicit RecordingMethod(Recording* r) : r_(r) {}
  bool NeedsCalibration() const override { return true; }
  InputsToGather InputsOf(const std::string&, const MlpLayout&) const override {
    return InputsToGather{/*gram=*/true, /*inputs=*/false};
  }
  absl::Status PruneBlock(BlockToPrune& block) override {
    for (const auto& linear : block.linears) r_->grams[block.index][linear.name] = linear.inputs->gram().clone();
    return PruningMethod::PruneBlock(block);
  }
  absl::Status PruneLinear(LinearToPrune& linear, const SparsityTarget& target) override {
    return magnitude_.PruneLinear(linear, target);
  }

 private:
  Recording* r_;  // outlives the run, which owns the method
  MagnitudePruning magnitude_;
};

// Where the time went: each stage the job ran, once, in the order it first ran, adding up to the
// run; after each block its pace and the estimate of the rest; and the digests of the weight files
// as computed while they were written.
TEST(PruneModel, ReportsSecondsPerStageThePaceOfTheBlocksAndTheDigestsOfWhatItWrote) {
  TempDir dir;
  PruneOptions options = Options(DataDir("tiny-llama"), dir / "out", 0.5);
  options.method = Method::kWanda;
  options.evaluation = EvaluationOptions{shears::testing::KjvSplitsDir() + "/test.txt", 64, 2000};
  options.calibration = CalibrationOptions{shears::testing::KjvSplitsDir() + "/test.txt", 4, 32, 3};
  std::vector<BlockProgress> paces;
  PruneObserver observer;
  observer.on_block = [&](const BlockProgress& pace) { paces.push_back(pace); };
  const auto start = std::chrono::steady_clock::now();
  auto report = PruneModel(options, observer);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(report.ok()) << report.status();

  std::vector<std::string> names;
  double sum = 0.0;
  for (const auto& stage : report->stages) {
    names.push_back(stage.stage);
    EXPECT_GE(stage.seconds, 0.0) << stage.stage;
    sum += stage.seconds;
  }
  // Tokenizing comes first (the evaluation windows), the first block is loaded, evaluated dense,
  // calibrated, measured (the dense linears' outputs the reconstruction error compares with),
  // pruned and written.
  EXPECT_EQ(names, (std::vector<std::string>{"tokenize", "load", "evaluate", "calibrate", "measure", "prune", "write"}));
  EXPECT_LE(sum, wall * 1.001);
  EXPECT_GT(sum, wall * 0.9) << "the stages leave little of the run unaccounted for";

  ASSERT_EQ(paces.size(), 2u);  // tiny-llama's blocks
  for (size_t i = 0; i < paces.size(); ++i) {
    EXPECT_EQ(paces[i].blocks_done, static_cast<int>(i) + 1);
    EXPECT_EQ(paces[i].blocks, 2);
    EXPECT_GT(paces[i].seconds_per_block, 0.0);
    EXPECT_NEAR(paces[i].seconds_left, paces[i].seconds_per_block * (2 - paces[i].blocks_done), 1e-9);
    EXPECT_FALSE(paces[i].stages.empty());
  }
  EXPECT_EQ(paces.back().seconds_left, 0.0);

  ASSERT_FALSE(report->digests.empty());
  for (const auto& [name, sha] : report->digests) {
    EXPECT_EQ(sha, Sha256File((fs::path(dir / "out") / name).string()).value()) << name;
  }
}

TEST(PruneModel, ACalibratedMethodSeesEachLinearsInputsFromThePrunedBlocksBefore) {
  TempDir dir;
  PruneOptions options = Options(DataDir("tiny-llama"), dir / "out", 0.5);
  options.calibration = CalibrationOptions{shears::testing::KjvSplitsDir() + "/test.txt", 4, 32, 3};
  Recording recording;
  const Recording* recorded = &recording;
  auto report = PruneModelWith(options, {}, std::make_unique<RecordingMethod>(&recording));
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectMagnitudePruned(DataDir("tiny-llama"), dir / "out", 0.5);

  auto model = ModelDir::Open(dir / "out");
  auto arch = MakeArchitecture((*model)->config());
  ASSERT_TRUE(model.ok() && arch.ok());
  for (int b = 0; b < 2; ++b) {
    std::set<std::string> expected;
    for (const auto& linear : (*arch)->BlockLinears(b)) expected.insert(linear.name.substr((*arch)->BlockPrefix(b).size()));
    std::set<std::string> observed;
    for (const auto& [name, gram] : recorded->grams.at(b)) observed.insert(name);
    EXPECT_EQ(observed, expected) << "block " << b;
  }
  for (const auto& layer : report->layers) {
    EXPECT_GT(layer.reconstruction_error, 0.0) << layer.name;
    EXPECT_LT(layer.reconstruction_error, 1.0) << layer.name;
  }

  // The same windows, recomputed independently through the written (pruned) model.
  auto tokenizer = LoadTokenizer(DataDir("tiny-llama"));
  auto ids = LoadTokenIds(options.calibration->path, tokenizer->get(), 2048);
  auto windows = CalibrationWindows(*ids, 4, 32, 3);
  ASSERT_TRUE(windows.ok());
  BlockRunner runner(**model, **arch, torch::kCPU);
  auto gram = [](const torch::Tensor& x) {
    auto rows = x.reshape({-1, x.size(-1)});
    return rows.t().matmul(rows);
  };
  auto h0 = runner.Embed(*windows);
  TensorMap block0 = runner.LoadBlock(0);
  const auto& eps = (*arch)->config().norm_eps;
  EXPECT_TRUE(torch::allclose(recorded->grams.at(0).at("self_attn.q_proj.weight"),
                              gram(RmsNorm(h0, block0.at("input_layernorm.weight"), eps)), 1e-4, 1e-3));
  auto h1 = runner.Run(0, block0, h0);
  TensorMap block1 = runner.LoadBlock(1);
  EXPECT_TRUE(torch::allclose(recorded->grams.at(1).at("self_attn.q_proj.weight"),
                              gram(RmsNorm(h1, block1.at("input_layernorm.weight"), eps)), 1e-4, 1e-3))
      << "block 1 saw the outputs of the pruned block 0";

  options.calibration.reset();
  Recording unused;
  EXPECT_EQ(PruneModelWith(options, {}, std::make_unique<RecordingMethod>(&unused)).status().code(),
            absl::StatusCode::kInvalidArgument)
      << "a calibrated method without calibration data";
}

TEST(PruneModel, StopsWhenCancelled) {
  TempDir dir;
  PruneObserver observer;
  observer.cancelled = [] { return true; };
  auto report = PruneModel(Options(DataDir("tiny-llama"), dir / "out", 0.5), observer);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kCancelled);
}

// Bad models fail with a message that says what is wrong and where.
class BrokenModel : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::copy(DataDir("tiny-llama"), dir_ / "m", fs::copy_options::recursive);
  }
  absl::Status Prune() { return PruneModel(Options(dir_ / "m", dir_ / "out", 0.5), {}).status(); }
  void EditConfig(const std::function<void(nlohmann::json&)>& edit) {
    auto config = nlohmann::json::parse(ReadFile(dir_ / "m/config.json").value());
    edit(config);
    ASSERT_TRUE(WriteFileAtomically(dir_ / "m/config.json", config.dump()).ok());
  }
  TempDir dir_;
};

TEST_F(BrokenModel, UnknownArchitecture) {
  EditConfig([](nlohmann::json& c) { c["model_type"] = "bert"; });
  absl::Status st = Prune();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("model_type 'bert' is not supported"), std::string::npos) << st;
}

TEST_F(BrokenModel, ConfigDisagreesWithWeights) {
  EditConfig([](nlohmann::json& c) { c["intermediate_size"] = 100; });
  absl::Status st = Prune();
  EXPECT_NE(st.message().find("tensor model.layers.0.mlp.gate_proj.weight has shape [176, 64], config.json implies "
                              "[100, 64]"),
            std::string::npos)
      << st;
}

TEST_F(BrokenModel, MissingTensor) {
  EditConfig([](nlohmann::json& c) { c["num_hidden_layers"] = 3; });
  absl::Status st = Prune();
  EXPECT_NE(st.message().find("tensor model.layers.2.input_layernorm.weight is missing"), std::string::npos) << st;
}

TEST_F(BrokenModel, TruncatedWeights) {
  const std::string path = dir_ / "m/model.safetensors";
  fs::resize_file(path, fs::file_size(path) - 100);
  absl::Status st = Prune();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("model.safetensors"), std::string::npos) << st;
  EXPECT_NE(st.message().find("outside the data section"), std::string::npos) << st;
}

TEST_F(BrokenModel, MissingConfig) {
  fs::remove(dir_ / "m/config.json");
  absl::Status st = Prune();
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find("config.json"), std::string::npos) << st;
}

TEST_F(BrokenModel, IndexNamesMissingShard) {
  ASSERT_TRUE(WriteFileAtomically(dir_ / "m/model.safetensors.index.json",
                                  R"({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}})")
                  .ok());
  absl::Status st = Prune();
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find("model-00002-of-00002.safetensors"), std::string::npos) << st;
}

TEST(PruneModel, MissingDirectoryIsNotFound) {
  TempDir dir;
  auto report = PruneModel(Options("/nonexistent/model", dir / "out", 0.5), {});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kNotFound);
}

// The front door checks the job rules before anything else: the engine refuses exactly what the
// server refuses at CreateJob, with the same words, over every combination of method, structure,
// data and output layout.
TEST(FrontDoor, RefusesWhatTheServerRefusesWithTheSameMessage) {
  int refused = 0, accepted = 0;
  for (int method = v1::METHOD_MAGNITUDE; method <= v1::METHOD_LAST_BLOCKS; ++method) {
    for (v1::Structure structure : {v1::STRUCTURE_UNSTRUCTURED, v1::STRUCTURE_N_M, v1::STRUCTURE_FFN_NEURONS,
                                    v1::STRUCTURE_LAYERS, v1::STRUCTURE_RANK}) {
      for (int data = 0; data < 4; ++data) {
        for (v1::OutputFormat format : {v1::OUTPUT_FORMAT_DENSE_SAFETENSORS, v1::OUTPUT_FORMAT_SPARSE_BITMASK,
                                        v1::OUTPUT_FORMAT_SPARSE_24_BITMASK}) {
          for (v1::Allocation allocation :
               {v1::ALLOCATION_UNSPECIFIED, v1::ALLOCATION_UNIFORM, v1::ALLOCATION_GLOBAL, v1::ALLOCATION_OWL}) {
            v1::JobSpec spec;
            spec.set_model_uri("file:///nonexistent/model");
            spec.mutable_output()->set_uri("file:///nonexistent/out");
            spec.set_method(static_cast<v1::Method>(method));
            spec.set_structure(structure);
            spec.set_target_sparsity(structure == v1::STRUCTURE_N_M ? 0.0 : 0.25);
            if (structure == v1::STRUCTURE_N_M) spec.mutable_n_m()->set_n(2), spec.mutable_n_m()->set_m(4);
            if (data & 1) {
              spec.mutable_calibration()->set_dataset_uri("file:///nonexistent/train.txt");
              spec.mutable_calibration()->set_num_samples(4);
              spec.mutable_calibration()->set_seq_len(32);
            }
            if (data & 2) {
              spec.mutable_fine_tune()->set_dataset_uri("file:///nonexistent/train.txt");
              spec.mutable_fine_tune()->set_steps(2);
            }
            if (method == v1::METHOD_PREDICTOR_SEARCH) spec.mutable_search()->set_base_method(v1::METHOD_MAGNITUDE);
            spec.mutable_output()->set_format(format);
            spec.set_allocation(allocation);
            const absl::Status server = ValidateSpec(spec);
            PruneOptions options = EngineOptions(spec).value();
            options.model_dir = "/nonexistent/model";
            options.output_dir = "/nonexistent/out";
            const absl::Status engine = PruneModel(options, {}).status();
            if (server.ok()) {
              ++accepted;
              EXPECT_EQ(engine.code(), absl::StatusCode::kNotFound) << "past the rules to the missing model: " << engine;
            } else {
              ++refused;
              EXPECT_EQ(engine.code(), absl::StatusCode::kInvalidArgument) << server;
              EXPECT_EQ("spec." + std::string(engine.message()), server.message());
            }
          }
        }
      }
    }
  }
  EXPECT_GT(accepted, 50);
  EXPECT_GT(refused, 1000);
}

TEST(FrontDoor, AMethodThatCannotPruneTheStructureIsRefusedNamingTheStructure) {
  TempDir dir;
  PruneOptions options = Options(DataDir("tiny-llama"), dir / "out", 0.25);
  options.method = Method::kMovement;
  options.structure = Structure::kUnstructured;
  options.fine_tune = FineTuneOptions{shears::testing::KjvSplitsDir() + "/train.txt", 2, 1e-4, 2, 32, false, -1.0};
  auto report = PruneModel(options, {});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(report.status().message(),
            "structure: STRUCTURE_UNSTRUCTURED is not supported with METHOD_MOVEMENT (it prunes STRUCTURE_FFN_NEURONS)");
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// Under a tensor memory limit that the search's first pass passes (windows of 32768 tokens, 8 MiB
// of hidden states each, under a limit of 12 MiB), LibTorch refuses the tensor with its
// out-of-memory error: the run fails with that reason, in the search as anywhere else, and every
// byte it held is given back.
TEST(FrontDoor, ALibTorchErrorInTheSearchFailsTheRunInsteadOfEscaping) {
  TempDir dir;
  std::string ids;
  for (int i = 0; i < 300000; ++i) ids += std::string{static_cast<char>(i % 251), '\0'};
  ASSERT_TRUE(WriteFileAtomically(dir / "ids.bin", ids).ok());
  PruneOptions options = Options(DataDir("tiny-llama"), dir / "out", 0.5);
  options.method = Method::kPredictorSearch;
  options.search.base_method = Method::kWanda;
  options.search.measured_configurations = 10;
  options.search.search_budget = 50;
  options.calibration = CalibrationOptions{dir / "ids.bin", 1, 32768, 0};
  InstallCpuBlockCache();
  const size_t held = CpuTensorBytesInUse();
  SetCpuTensorMemoryLimit(size_t{12} << 20);
  auto report = PruneModel(options, {});
  SetCpuTensorMemoryLimit(0);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInternal) << report.status();
  EXPECT_EQ(report.status().message().rfind("engine: ", 0), 0u) << report.status();
  EXPECT_NE(report.status().message().find("would pass the worker's 12 MiB (--max-tensor-memory)"), std::string::npos)
      << report.status();
  EXPECT_EQ(CpuTensorBytesInUse(), held);
  EXPECT_FALSE(fs::exists(dir / "out"));
}

}  // namespace
}  // namespace shears::engine
