// shears-train: trains a small llama or gpt2 model, or one of any family a config.json gives, from
// scratch with the engine's training loop, on text tokenized by the tokenizer it is given; the test
// fixtures are made with it.
#include <filesystem>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/command_line.h"
#include "common/files.h"
#include "worker/engine/model/architecture.h"
#include "worker/engine/model/architecture_factory.h"
#include "worker/engine/model/block_runner.h"
#include "worker/engine/runtime/runtime.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"
#include "worker/engine/training/trainer.h"

namespace {

using namespace shears::engine;

constexpr char kUsage[] = R"(usage: shears-train --arch llama|gpt2 --tokenizer-dir DIR --train FILE --valid FILE --out DIR
  model:    --layers 2 --hidden 64 --ffn 176 (llama) --heads 4 --kv-heads 2 (llama) --positions 1024
            or --config FILE: a config.json of any supported family (its vocab_size set to the tokenizer's)
  training: --steps 2000 --batch 16 --seq-len 128 --lr 3e-3 --warmup 100 --seed 0 --threads N
The tokenizer (tokenizer.json or tokenizer.model in --tokenizer-dir) is copied into --out.
)";

int Fail(const std::string& message) {
  std::cerr << "shears-train: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  auto cl = shears::CommandLine::Parse(argc, argv, {"help"});
  if (!cl.ok()) return Fail(std::string(cl.status().message()));
  if (cl->Has("help") || !cl->Has("out") || !cl->Has("train") || !cl->Has("tokenizer-dir")) {
    std::cerr << kUsage;
    return cl->Has("help") ? 0 : 2;
  }
  auto num = [&](const char* flag, int64_t fallback) { return cl->GetInt(flag, fallback).value_or(fallback); };
  const std::string arch_name = cl->GetOr("arch", "llama");
  const std::string tokenizer_dir = *cl->Get("tokenizer-dir"), out = *cl->Get("out");
  if (auto st = ConfigureRuntime(static_cast<int>(num("threads", std::thread::hardware_concurrency())), "cpu");
      !st.ok()) {
    return Fail(std::string(st.message()));
  }
  auto tokenizer = LoadTokenizer(tokenizer_dir);
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));
  const int64_t vocab = (*tokenizer)->vocab_size();
  const int64_t layers = num("layers", 2), hidden = num("hidden", 64), heads = num("heads", 4);

  nlohmann::json config;
  if (auto given = cl->Get("config")) {
    auto text = shears::ReadFile(*given);
    if (!text.ok()) return Fail(std::string(text.status().message()));
    config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (!config.is_object()) return Fail(*given + ": not a JSON object");
    config["vocab_size"] = vocab;
    if (!config.contains("torch_dtype")) config["torch_dtype"] = "float32";
  } else if (arch_name == "llama") {
    config = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"vocab_size", vocab},
              {"hidden_size", hidden}, {"intermediate_size", num("ffn", 176)}, {"num_hidden_layers", layers},
              {"num_attention_heads", heads}, {"num_key_value_heads", num("kv-heads", 2)},
              {"max_position_embeddings", num("positions", 1024)}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0},
              {"hidden_act", "silu"}, {"tie_word_embeddings", false}, {"torch_dtype", "float32"}};
  } else if (arch_name == "gpt2") {
    config = {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"vocab_size", vocab},
              {"n_embd", hidden}, {"n_layer", layers}, {"n_head", heads}, {"n_positions", num("positions", 1024)},
              {"n_inner", nullptr}, {"activation_function", "gelu_new"}, {"layer_norm_epsilon", 1e-5},
              {"tie_word_embeddings", true}, {"torch_dtype", "float32"}};
  } else {
    return Fail("--arch must be llama or gpt2");
  }
  auto arch = MakeArchitecture(config);
  if (!arch.ok()) return Fail(std::string(arch.status().message()));

  auto train_ids = LoadTokenIds(*cl->Get("train"), tokenizer->get(), vocab);
  if (!train_ids.ok()) return Fail(std::string(train_ids.status().message()));
  TrainOptions options;
  options.steps = num("steps", 2000);
  options.batch_size = num("batch", 16);
  options.seq_len = num("seq-len", 128);
  options.learning_rate = cl->GetDouble("lr", 3e-3).value_or(3e-3);
  options.warmup_steps = num("warmup", 100);
  options.seed = static_cast<uint64_t>(num("seed", 0));
  std::cout << "training " << config.value("model_type", arch_name) << " on " << train_ids->numel() << " tokens, " << options.steps << " steps"
            << std::endl;

  ModelWeights weights = InitWeights(**arch, options.seed, torch::kCPU);
  double recent = 0;
  auto st = Train(**arch, weights, *train_ids, options, [&](const TrainStep& s) {
    recent += s.loss;
    if ((s.step + 1) % 100 == 0) {
      std::cout << "step " << s.step + 1 << " lr " << s.learning_rate << " loss " << recent / 100 << std::endl;
      recent = 0;
    }
  });
  if (!st.ok()) return Fail(std::string(st.message()));
  if (auto saved = SaveModel(**arch, weights, config, out); !saved.ok()) return Fail(std::string(saved.message()));
  for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"}) {
    const std::string from = tokenizer_dir + "/" + name;
    if (std::filesystem::exists(from)) (void)shears::CopyFileAtomically(from, out + "/" + name);
  }

  if (auto valid = cl->Get("valid")) {
    auto ids = LoadTokenIds(*valid, tokenizer->get(), vocab);
    if (!ids.ok()) return Fail(std::string(ids.status().message()));
    auto windows = EvaluationWindows(*ids, options.seq_len, 0);
    auto model = ModelDir::Open(out);
    if (!windows.ok() || !model.ok()) return Fail("cannot evaluate the saved model");
    BlockRunner runner(**model, **arch, torch::kCPU);
    std::cout << "validation perplexity " << Perplexity(runner, *windows) << " (" << windows->size(0)
              << " windows of " << options.seq_len << ")" << std::endl;
  }
  return 0;
}
