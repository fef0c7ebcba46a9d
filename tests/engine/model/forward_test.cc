// The engine's forward pass against the reference instruments, per architecture and dtype, and the
// perplexity the block runner measures.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>

#include "common/files.h"
#include <nlohmann/json.hpp>
#include "tests/support/model_builders.h"
#include "tests/support/process.h"
#include "tests/support/test_util.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/model/layers.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace shears::engine {
namespace {

using shears::testing::DataDir;
using shears::testing::RunCommand;
using shears::testing::TempDir;

const std::string& KjvDir() { return shears::testing::KjvSplitsDir(); }

struct Reference {
  torch::Tensor logits;
  double perplexity;
};

// Runs tests/reference/forward.py (tinylm.py for llama and gpt2) on the same files and ids.
Reference RunReference(const std::string& model_dir, const torch::Tensor& ids, const TempDir& dir, int64_t vocab) {
  auto flat = ids.to(torch::kInt64).contiguous();
  std::ofstream(dir / "ids.bin", std::ios::binary)
      .write(static_cast<const char*>(flat.data_ptr()), flat.numel() * sizeof(int64_t));
  auto run = shears::testing::RunCommand(
      {"/usr/bin/python3", std::string(SHEARS_SOURCE_DIR) + "/tests/reference/forward.py", model_dir, dir / "ids.bin",
       std::to_string(ids.size(0)), std::to_string(ids.size(1)), dir / "ref"},
      dir / "ref.log");
  EXPECT_EQ(run.status, 0) << run.out;
  std::string raw = ReadFile(dir / "ref.logits").value_or("");
  auto logits = torch::empty({ids.size(0), ids.size(1), vocab});
  EXPECT_EQ(raw.size(), static_cast<size_t>(logits.numel() * 4)) << run.out;
  if (raw.size() == static_cast<size_t>(logits.numel() * 4)) std::memcpy(logits.data_ptr(), raw.data(), raw.size());
  return {logits, std::stod(ReadFile(dir / "ref.ppl").value_or("nan"))};
}

struct Engine {
  torch::Tensor logits;
  double perplexity;
};

Engine RunEngine(const std::string& model_dir, const torch::Tensor& ids) {
  auto model = ModelDir::Open(model_dir);
  EXPECT_TRUE(model.ok()) << model.status();
  auto arch = MakeArchitecture((*model)->config());
  EXPECT_TRUE(arch.ok()) << arch.status();
  EXPECT_TRUE((*arch)->CheckWeights(**model).ok());
  BlockRunner runner(**model, **arch, torch::kCPU, /*batch=*/2);
  auto hidden = runner.Embed(ids);
  for (int b = 0; b < (*arch)->num_blocks(); ++b) hidden = runner.Run(b, runner.LoadBlock(b), hidden);
  auto [nll, count] = runner.NextTokenLoss(hidden, ids);
  return {runner.Logits(hidden), std::exp(nll / count)};
}

double RelativeError(const torch::Tensor& got, const torch::Tensor& want) {
  return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
}

torch::Tensor RandomIds(int64_t n, int64_t t, int64_t vocab) {
  torch::manual_seed(7);
  return torch::randint(vocab, {n, t}, torch::kInt64);
}

struct Case {
  std::string name;
  std::string fixture;
  torch::ScalarType dtype;
};

class LogitsAgree : public ::testing::TestWithParam<Case> {};

TEST_P(LogitsAgree, WithTheReferenceToOneInTenThousand) {
  TempDir dir;
  std::string model = DataDir(GetParam().fixture);
  if (GetParam().dtype != torch::kFloat32) {
    shears::testing::RewriteModel(model, dir / "model", GetParam().dtype, /*shards=*/2);
    model = dir / "model";
  }
  auto ids = RandomIds(3, 48, 2048);
  Engine engine = RunEngine(model, ids);
  Reference ref = RunReference(model, ids, dir, 2048);
  EXPECT_LT(RelativeError(engine.logits, ref.logits), 1e-4);
  EXPECT_NEAR(engine.perplexity / ref.perplexity, 1.0, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LogitsAgree,
                         ::testing::Values(Case{"LlamaF32", "tiny-llama", torch::kFloat32},
                                           Case{"LlamaF16", "tiny-llama", torch::kFloat16},
                                           Case{"LlamaBF16", "tiny-llama", torch::kBFloat16},
                                           Case{"Gpt2F32", "tiny-gpt2", torch::kFloat32},
                                           Case{"Gpt2F16", "tiny-gpt2", torch::kFloat16},
                                           Case{"Gpt2BF16", "tiny-gpt2", torch::kBFloat16}),
                         [](const auto& info) { return info.param.name; });

struct OptCase {
  std::string name;
  int embed_dim;
  bool layer_norm_before;
};

class OptLogitsAgree : public ::testing::TestWithParam<OptCase> {};

TEST_P(OptLogitsAgree, WithAnIndependentImplementation) {
  TempDir dir;
  shears::testing::WriteSyntheticOpt(dir / "opt", 2, 32, 64, 50, GetParam().embed_dim, GetParam().layer_norm_before);
  auto ids = RandomIds(2, 16, 50);
  Engine engine = RunEngine(dir / "opt", ids);
  Reference ref = RunReference(dir / "opt", ids, dir, 50);
  EXPECT_LT(RelativeError(engine.logits, ref.logits), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Variants, OptLogitsAgree,
                         ::testing::Values(OptCase{"PreLayerNorm", 32, true}, OptCase{"PostLayerNorm", 32, false},
                                           OptCase{"ProjectedEmbeddings", 16, true}),
                         [](const auto& info) { return info.param.name; });

// Mistral's sliding window: with one block and a window of 2, position t sees only tokens t-1 and
// t, so changing token 0 changes the logits at positions 0 and 1 and nowhere after; a window as
// long as the sequence changes nothing.
TEST(Mistral, SlidingWindowLimitsWhatEachPositionSees) {
  TempDir dir;
  shears::testing::WriteSyntheticLlama(dir / "m", 1, 32, 64, 50);
  auto logits_with = [&](const nlohmann::json& extra, const torch::Tensor& ids) {
    auto config = nlohmann::json::parse(ReadFile(dir / "m/config.json").value());
    config.update(extra);
    EXPECT_TRUE(WriteFileAtomically(dir / "m/config.json", config.dump()).ok());
    return RunEngine(dir / "m", ids).logits;
  };
  auto ids = RandomIds(1, 8, 50);
  auto changed = ids.clone();
  changed[0][0] = (ids[0][0].item<int64_t>() + 1) % 50;
  const nlohmann::json windowed = {{"model_type", "mistral"}, {"sliding_window", 2}};
  auto a = logits_with(windowed, ids), b = logits_with(windowed, changed);
  EXPECT_FALSE(torch::allclose(a.select(1, 1), b.select(1, 1)));
  EXPECT_TRUE(torch::equal(a.slice(1, 2), b.slice(1, 2)));
  auto full = logits_with({{"model_type", "llama"}, {"sliding_window", nullptr}}, ids);
  EXPECT_FALSE(torch::allclose(a, full)) << "the window changed something";
  EXPECT_TRUE(torch::allclose(logits_with({{"model_type", "mistral"}, {"sliding_window", 8}}, ids), full));
  // Qwen2's window, used only when asked to: families_test (Qwen2 needs its q/k/v biases).
}

// Attention, made a few heads at a time with the mask added as the scores are multiplied, equals
// the whole masked product over 300 positions, with grouped-query heads, a sliding window and
// Gemma 2's soft cap.
TEST(CausalAttention, ChunkedEqualsTheWholeMaskedProduct) {
  torch::manual_seed(3);
  const int64_t length = 300, heads = 4, kv_heads = 2, dim = 8;
  const auto q = torch::randn({2, heads, length, dim}), k = torch::randn({2, kv_heads, length, dim});
  const auto v = torch::randn({2, kv_heads, length, dim});
  for (const int64_t window : {int64_t{0}, int64_t{100}}) {
    for (const double softcap : {0.0, 2.0}) {
      auto scores = q.matmul(k.repeat_interleave(heads / kv_heads, 1).transpose(2, 3)) * 0.5;
      if (softcap > 0) scores = torch::tanh(scores / softcap) * softcap;
      const auto position = torch::arange(length);
      auto hidden = position.unsqueeze(0) > position.unsqueeze(1);
      if (window > 0) hidden = hidden.logical_or(position.unsqueeze(0) <= position.unsqueeze(1) - window);
      const auto expected = torch::softmax(scores.masked_fill(hidden, -INFINITY), -1)
                                .matmul(v.repeat_interleave(heads / kv_heads, 1))
                                .transpose(1, 2)
                                .reshape({2, length, heads * dim});
      const auto attended = CausalAttention(q, k, v, 0.5, window, softcap);
      EXPECT_TRUE(torch::allclose(attended, expected, 1e-5, 1e-5))
          << "window " << window << " softcap " << softcap << ": off by "
          << (attended - expected).abs().max().item<float>();
    }
  }
}

// A case small enough to check by hand: with every block weight and bias zero each OPT block is
// the identity, so the logits are LayerNorm(token embedding + position row t+2) times the
// embedding matrix, computed here with plain loops.
TEST(Opt, HandCheckedZeroBlock) {
  TempDir dir;
  shears::testing::WriteSyntheticOpt(dir / "opt", 1, 8, 16, 5, 8, true);
  auto model = ModelDir::Open(dir / "opt");
  ASSERT_TRUE(model.ok());
  auto arch = MakeArchitecture((*model)->config());
  ASSERT_TRUE(arch.ok());
  BlockRunner runner(**model, **arch, torch::kCPU);
  TensorMap block = runner.LoadBlock(0);
  for (auto& [name, t] : block) {
    if (name.find("layer_norm") == std::string::npos) t.zero_();
  }
  auto ids = torch::tensor({{3, 1, 4}}, torch::kInt64);
  auto logits = runner.Logits(runner.Run(0, block, runner.Embed(ids)));

  auto outer = LoadTensors(**model, "", (*arch)->OuterTensors(), torch::kCPU);
  auto emb = outer.at("model.decoder.embed_tokens.weight").accessor<float, 2>();
  auto pos = outer.at("model.decoder.embed_positions.weight").accessor<float, 2>();
  auto gamma = outer.at("model.decoder.final_layer_norm.weight").accessor<float, 1>();
  auto beta = outer.at("model.decoder.final_layer_norm.bias").accessor<float, 1>();
  const int d = 8, vocab = 5;
  for (int t = 0; t < 3; ++t) {
    const int id = static_cast<int>(ids[0][t].item<int64_t>());
    double x[8], mean = 0, var = 0;
    for (int i = 0; i < d; ++i) mean += x[i] = emb[id][i] + pos[t + 2][i];
    mean /= d;
    for (int i = 0; i < d; ++i) var += (x[i] - mean) * (x[i] - mean);
    var /= d;
    for (int i = 0; i < d; ++i) x[i] = (x[i] - mean) / std::sqrt(var + 1e-5) * gamma[i] + beta[i];
    for (int v = 0; v < vocab; ++v) {
      double want = 0;
      for (int i = 0; i < d; ++i) want += x[i] * emb[v][i];
      EXPECT_NEAR(logits[0][t][v].item<double>(), want, 1e-4) << "t=" << t << " v=" << v;
    }
  }
}

// The perplexity protocol of the seeds, on the KJV test split, equal to the reference's.
TEST(Perplexity, OfTheFixtureMatchesTheReference) {
  TempDir dir;
  for (const std::string fixture : {"tiny-llama", "tiny-gpt2"}) {
    auto model = ModelDir::Open(DataDir(fixture));
    ASSERT_TRUE(model.ok());
    auto arch = MakeArchitecture((*model)->config());
    auto tokenizer = LoadTokenizer(DataDir(fixture));
    ASSERT_TRUE(arch.ok() && tokenizer.ok());
    auto ids = LoadTokenIds(KjvDir() + "/test.txt", tokenizer->get(), 2048);
    ASSERT_TRUE(ids.ok());
    auto windows = EvaluationWindows(*ids, 128, 16384);
    ASSERT_TRUE(windows.ok());
    BlockRunner runner(**model, **arch, torch::kCPU);
    const double ours = Perplexity(runner, *windows);

    auto flat = windows->contiguous();
    std::ofstream(dir / "ids.bin", std::ios::binary)
        .write(static_cast<const char*>(flat.data_ptr()), flat.numel() * sizeof(int64_t));
    auto run = RunCommand({"/usr/bin/python3", std::string(SHEARS_SOURCE_DIR) + "/tests/reference/forward.py",
                           DataDir(fixture), dir / "ids.bin", std::to_string(windows->size(0)), "128", dir / "ref"},
                          dir / "ref.log");
    ASSERT_EQ(run.status, 0) << run.out;
    const double reference = std::stod(ReadFile(dir / "ref.ppl").value());
    EXPECT_NEAR(ours / reference, 1.0, 1e-3) << fixture << ": ours " << ours << ", reference " << reference;
    EXPECT_LT(ours, 100) << "a trained model, not noise";
  }
}

// The loss and its gradient are made a few positions at a time (a real vocabulary's logits do not
// fit at once): a budget of 5 positions crosses windows and chunk edges, and gives what the whole
// logits give, to float rounding.
TEST(BlockRunner, ChunkedLossAndGradientEqualTheWholeLogits) {
  auto model = ModelDir::Open(DataDir("tiny-llama"));
  ASSERT_TRUE(model.ok());
  auto arch = MakeArchitecture((*model)->config());
  ASSERT_TRUE(arch.ok());
  torch::manual_seed(2);
  const auto ids = torch::randint((*arch)->config().vocab, {3, 17}, torch::kInt64);
  BlockRunner runner(**model, **arch, torch::kCPU);
  auto hidden = runner.Embed(ids);
  for (int b = 0; b < (*arch)->num_blocks(); ++b) hidden = runner.Run(b, runner.LoadBlock(b), hidden);

  // What one cross-entropy over all the logits gives, with its gradient by autograd.
  const int64_t vocab = (*arch)->config().vocab;
  auto h = hidden.detach().clone().requires_grad_(true);
  double want_loss = 0;
  {
    torch::AutoGradMode enable(true);
    auto logits = (*arch)->Logits(LoadTensors(**model, "", (*arch)->OuterTensors(), torch::kCPU), h);
    auto loss = torch::nn::functional::cross_entropy(
        logits.slice(1, 0, -1).reshape({-1, vocab}), ids.slice(1, 1).reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    want_loss = loss.item<double>();
    (loss / 48.0).backward();
  }
  runner.set_logit_budget(5 * vocab);
  const auto chunked = runner.NextTokenLoss(hidden, ids);
  const auto chunked_grad = runner.LossGradient(hidden, ids);
  EXPECT_EQ(chunked.second, 3 * 16);
  EXPECT_NEAR(chunked.first / want_loss, 1.0, 1e-6);
  EXPECT_TRUE(torch::allclose(chunked_grad, h.grad(), 1e-5, 1e-6))
      << "off by " << (chunked_grad - h.grad()).abs().max().item<double>() << " of "
      << h.grad().abs().max().item<double>();
  EXPECT_EQ(chunked_grad.select(1, 16).abs().max().item<double>(), 0.0) << "the last position predicts nothing";
}

}  // namespace
}  // namespace shears::engine
