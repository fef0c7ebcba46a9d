// ALLOCATION_OWL: OWL's rule, its outlier shares and sparsities against the OWL code's own
// (tests/reference/prune.py --owl), the exact uniform budget, and a block given outliers kept
// denser than the rest.
#include "worker/engine/allocation/owl.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "common/files.h"
#include "tests/support/process.h"
#include "tests/support/test_util.h"
#include "worker/engine/io/model_config.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/methods/masks.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/prune_model.h"
#include "worker/engine/text/job_datasets.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::DataDir;
using shears::testing::KjvSplitsDir;
using shears::testing::TempDir;

PruneOptions OwlJob(const std::string& model, const std::string& out, Method method, double target) {
  PruneOptions o;
  o.model_dir = model;
  o.output_dir = out;
  o.method = method;
  o.target_sparsity = target;
  o.allocation = Allocation::kOwl;
  o.calibration = CalibrationOptions{KjvSplitsDir() + "/train.txt", 16, 64, 1};
  return o;
}

std::map<std::string, torch::Tensor> Tensors(const std::string& dir) {
  std::map<std::string, torch::Tensor> out;
  auto model = ModelDir::Open(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return out;
  for (const auto& file : (*model)->files()) {
    for (const auto& info : file->tensors()) out[info.name] = LoadTensor(*file, info);
  }
  return out;
}

// Zeros among the block linears of the model in `dir`, per block.
std::vector<int64_t> ZerosPerBlock(const std::string& dir) {
  auto tensors = Tensors(dir);
  auto model = ModelDir::Open(dir);
  auto arch = MakeArchitecture((*model)->config()).value();
  std::vector<int64_t> zeros(arch->num_blocks(), 0);
  for (int b = 0; b < arch->num_blocks(); ++b) {
    for (const auto& linear : arch->BlockLinears(b)) zeros[b] += (tensors.at(linear.name) == 0).sum().item<int64_t>();
  }
  return zeros;
}

TEST(OwlRule, KeepsTheMeanAtTheTargetAndGivesMoreOutliersMoreWeights) {
  const std::vector<double> ratios = {0.010, 0.030, 0.020, 0.050, 0.012};
  const auto sparsity = OwlSparsities(ratios, 0.7, 0.08);
  ASSERT_EQ(sparsity.size(), ratios.size());
  EXPECT_NEAR(std::accumulate(sparsity.begin(), sparsity.end(), 0.0) / sparsity.size(), 0.7, 1e-12);
  // Min-max scaled to a spread of 2λ: the block with the most outliers 0.16 below the one with least.
  EXPECT_NEAR(sparsity[0] - sparsity[3], 0.16, 1e-12);
  for (size_t i = 0; i < ratios.size(); ++i) {
    for (size_t j = 0; j < ratios.size(); ++j) {
      if (ratios[i] > ratios[j]) EXPECT_LT(sparsity[i], sparsity[j]) << i << " " << j;
    }
  }
  EXPECT_EQ(OwlSparsities({0.02, 0.02, 0.02}, 0.6, 0.08), (std::vector<double>{0.6, 0.6, 0.6}));
  const OwlOptions defaults = OwlWithDefaults({});
  EXPECT_EQ(defaults.outlier_multiple, 5.0);
  EXPECT_EQ(defaults.max_deviation, 0.08);
}

// OWL's code (prune_wanda_outlier, as tests/reference/prune.py --owl runs it) on the same windows:
// the same outlier shares, and the same sparsity per block up to the rounding of counts.
TEST(Owl, MeasuresAndAllocatesAsTheOwlCodeDoes) {
  TempDir dir;
  const std::string model = DataDir("tiny-llama-deep");
  PruneOptions options = OwlJob(model, dir / "out", Method::kWanda, 0.7);
  auto report = PruneModel(options, {});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->owl.has_value());
  EXPECT_EQ(report->owl->outlier_multiple, 5.0);
  EXPECT_EQ(report->owl->max_deviation, 0.08);
  ASSERT_EQ(report->owl->blocks.size(), 8u);

  auto opened = ModelDir::Open(model);
  ASSERT_TRUE(opened.ok());
  auto config = ModelConfig::Parse((*opened)->config());
  ASSERT_TRUE(config.ok());
  JobDatasets data(**opened, *config);
  auto windows = data.CalibrationWindows(*options.calibration);
  ASSERT_TRUE(windows.ok()) << windows.status();
  const torch::Tensor ids = windows->to(torch::kInt64).contiguous();
  ASSERT_TRUE(WriteFileAtomically(dir / "windows.bin", std::string(reinterpret_cast<const char*>(ids.data_ptr<int64_t>()),
                                                                   ids.numel() * sizeof(int64_t)))
                  .ok());
  auto run = shears::testing::RunCommand(
      {"/usr/bin/python3", std::string(SHEARS_SOURCE_DIR) + "/tests/reference/prune.py", model, dir / "windows.bin",
       std::to_string(ids.size(1)), "wanda", "--sparsity", "0.7", "--owl", "5:0.08", "--threads", "1", "--json",
       dir / "reference.json"},
      dir / "reference.log");
  ASSERT_EQ(run.status, 0) << run.out;
  std::ifstream in(dir / "reference.json");
  const auto reference = nlohmann::json::parse(in)["owl"];
  double mean = 0.0;
  for (int b = 0; b < 8; ++b) {
    const OwlBlock& ours = report->owl->blocks[b];
    EXPECT_EQ(ours.block, b);
    EXPECT_NEAR(ours.outlier_ratio * 100.0, reference["outlier_percent"][b].get<double>(), 0.01) << "block " << b;
    // A score within rounding of the threshold may fall either way (one weight is 0.002%), and
    // each linear rounds its count.
    EXPECT_NEAR(ours.sparsity, reference["sparsity"][b].get<double>(), 2e-3) << "block " << b;
    mean += ours.sparsity / 8;
  }
  EXPECT_NEAR(mean, 0.7, 1e-4);
  const auto [low, high] = std::minmax_element(report->owl->blocks.begin(), report->owl->blocks.end(),
                                               [](const OwlBlock& a, const OwlBlock& b) { return a.sparsity < b.sparsity; });
  EXPECT_NEAR(high->sparsity - low->sparsity, 0.16, 2e-3) << "the spread is 2λ";
  // The zeros on disk are the sparsities reported.
  const auto zeros = ZerosPerBlock(dir / "out");
  auto arch = MakeArchitecture((*opened)->config()).value();
  for (int b = 0; b < 8; ++b) {
    int64_t size = 0;
    for (const auto& linear : arch->BlockLinears(b)) size += linear.shape[0] * linear.shape[1];
    EXPECT_NEAR(double(zeros[b]) / double(size), report->owl->blocks[b].sparsity, 1e-9) << "block " << b;
  }
}

// A block whose weights hold a few much larger than the rest has more outliers among its Wanda scores: OWL
// prunes it least, and the model loses exactly the weights uniform pruning at exact counts removes,
// with every method OWL applies to.
TEST(Owl, PrunesTheOutlierHeavyBlockLeastAtExactlyTheUniformBudget) {
  TempDir dir;
  const std::string model = dir / "outliers";
  fs::create_directories(model);
  for (const char* name : {"config.json", "tokenizer.json"}) {
    fs::copy_file(DataDir("tiny-llama-deep") + "/" + name, model + "/" + name);
  }
  auto tensors = Tensors(DataDir("tiny-llama-deep"));
  NamedTensors edited;
  for (auto& [name, tensor] : tensors) {
    if (name.rfind("model.layers.5.", 0) == 0 && name.find("proj.weight") != std::string::npos) {
      // Every weight but one in ten made 20 times smaller: the ones left stand out of the
      // block's mean (OWL's share is of scores above M times it).
      auto flat = tensor.clone().flatten().mul_(0.05);
      flat.slice(0, 0, flat.numel(), 10).mul_(20.0);
      tensor = flat.view(tensor.sizes());
    }
    edited.emplace_back(name, tensor);
  }
  ASSERT_TRUE(WriteSafetensors(model + "/model.safetensors", edited).ok());

  for (Method method : {Method::kMagnitude, Method::kWanda, Method::kSparseGpt}) {
    SCOPED_TRACE(static_cast<int>(method));
    PruneOptions owl = OwlJob(model, dir / "owl", method, 0.6);
    owl.owl.max_deviation = 0.1;
    auto report = PruneModel(owl, {});
    ASSERT_TRUE(report.ok()) << report.status();
    ASSERT_TRUE(report->owl.has_value());
    const auto& blocks = report->owl->blocks;
    for (int b = 0; b < 8; ++b) {
      if (b == 5) continue;
      EXPECT_GT(blocks[5].outlier_ratio, blocks[b].outlier_ratio) << b;
      EXPECT_LT(blocks[5].sparsity, blocks[b].sparsity) << b;
    }
    EXPECT_LT(blocks[5].sparsity, 0.6);

    // Exactly the weights uniform pruning at exact counts removes: each linear's share rounded alone.
    auto arch = MakeArchitecture(ModelDir::Open(model).value()->config()).value();
    const auto zeros = ZerosPerBlock(dir / "owl");
    EXPECT_EQ(std::accumulate(zeros.begin(), zeros.end(), int64_t{0}), SearchSpace::For(*arch, 0.6, 0.0)->budget());
    EXPECT_EQ(report->parameters_before - report->parameters_after, SearchSpace::For(*arch, 0.6, 0.0)->budget());
    int64_t uniform_block5 = 0;
    for (const auto& linear : arch->BlockLinears(5)) uniform_block5 += PrunedCount(linear.shape[0] * linear.shape[1], 0.6);
    EXPECT_LT(zeros[5], uniform_block5);
    fs::remove_all(dir / "owl");
  }
}

}  // namespace
}  // namespace shears::engine
