#include "tests/support/pruned_model_checks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>

#include "common/files.h"
#include "tests/support/process.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/tensor_io.h"
#include "worker/engine/methods/masks.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/prune_model.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace shears::testing {

using namespace shears::engine;

namespace {

bool IsBlockLinear(const std::string& name) {
  for (const char* s : {"_proj.weight", "c_attn.weight", "c_fc.weight", "attn.c_proj.weight", "mlp.c_proj.weight"}) {
    if (name.size() > std::strlen(s) && name.compare(name.size() - std::strlen(s), std::strlen(s), s) == 0) return true;
  }
  return false;
}

}  // namespace

void ExpectMagnitudePruned(const std::string& input, const std::string& output, double sparsity) {
  auto in = ModelDir::Open(input);
  auto out = ModelDir::Open(output);
  ASSERT_TRUE(in.ok()) << in.status();
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ((*in)->files().size(), (*out)->files().size());
  int linears = 0;
  for (const auto& file : (*in)->files()) {
    for (const auto& info : file->tensors()) {
      const auto* o = (*out)->Find(info.name);
      ASSERT_NE(o, nullptr) << info.name;
      EXPECT_EQ(BaseName(o->file->path()), BaseName(file->path())) << "same shard for " << info.name;
      EXPECT_EQ(o->info->dtype, info.dtype) << info.name;
      EXPECT_EQ(o->info->shape, info.shape) << info.name;
      torch::Tensor before = LoadTensor(*file, info);
      torch::Tensor after = LoadTensor(*o->file, *o->info);
      if (!IsBlockLinear(info.name)) {
        auto a = file->Data(info);
        auto b = o->file->Data(*o->info);
        EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << info.name << " changed";
        continue;
      }
      ++linears;
      const int64_t zeros_before = (before == 0).sum().item<int64_t>();
      const int64_t zeros_after = (after == 0).sum().item<int64_t>();
      const int64_t target = PrunedCount(before.numel(), sparsity);
      EXPECT_LE(std::abs(zeros_after - std::max(target, zeros_before)), 1) << info.name;
      // Survivors are untouched, bit for bit, and none is smaller than a pruned weight.
      auto kept = after != 0;
      EXPECT_TRUE(torch::equal(after.masked_select(kept), before.masked_select(kept))) << info.name;
      if (zeros_after > zeros_before && kept.any().item<bool>()) {
        auto mags = before.abs().to(torch::kFloat32);
        EXPECT_LE(mags.masked_select(~kept).max().item<float>(), mags.masked_select(kept).min().item<float>())
            << info.name;
      }
    }
  }
  EXPECT_GT(linears, 0);
}

void ExpectReproducibleBySeed(PruneOptions options, const std::string& dir) {
  for (const char* run : {"a", "b", "c"}) {
    if (std::string(run) == "c") ++options.seed;
    options.output_dir = dir + "/" + run;
    auto report = PruneModel(options, {});
    ASSERT_TRUE(report.ok()) << run << ": " << report.status();
  }
  auto weights = [&](const char* run) { return ReadFile(dir + "/" + run + "/model.safetensors").value(); };
  EXPECT_EQ(weights("a"), weights("b")) << "same seed, same model";
  EXPECT_NE(weights("a"), weights("c")) << "another seed, another model";
}

torch::Tensor StoredTensor(const std::string& dir, const std::string& name) {
  auto model = ModelDir::Open(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  const auto* at = (*model)->Find(name);
  EXPECT_NE(at, nullptr) << name;
  return at == nullptr ? torch::Tensor() : LoadTensor(*at->file, *at->info);
}

std::vector<int64_t> WrittenFfnWidths(const std::string& dir) {
  auto model = ModelDir::Open(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  auto config = ModelConfig::Parse((*model)->config());
  EXPECT_TRUE(config.ok()) << config.status();
  if (!config.ok()) return {};
  std::vector<int64_t> widths;
  for (int b = 0; b < config->layers; ++b) widths.push_back(config->FfnOf(b));
  return widths;
}

double TestSplitPerplexity(const std::string& dir) {
  auto model = ModelDir::Open(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  auto arch = MakeArchitecture((*model)->config());
  EXPECT_TRUE(arch.ok()) << arch.status();
  EXPECT_TRUE((*arch)->CheckWeights(**model).ok());
  auto tokenizer = LoadTokenizer(dir);
  auto ids = LoadTokenIds(KjvSplitsDir() + "/test.txt", tokenizer->get(), (*arch)->config().vocab);
  BlockRunner runner(**model, **arch, torch::kCPU);
  return Perplexity(runner, *EvaluationWindows(*ids, 64, 4096));
}

}  // namespace shears::testing
