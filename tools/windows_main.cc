// shears-windows: the token windows a job would draw from a dataset, as raw little-endian int64
// ids [N * seq_len], so that a reference implementation outside the engine (tests/reference/
// prune.py) calibrates and evaluates on exactly the windows Shears uses. The engine's own code
// draws them: JobDatasets with the model's tokenizer, SparseGPT's seeded sampling for calibration
// (--samples, --seed) or consecutive windows for evaluation (--max-tokens).
#include <fstream>
#include <iostream>

#include "common/command_line.h"
#include "worker/engine/io/model_config.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/text/job_datasets.h"

namespace {

int Fail(const std::string& message) {
  std::cerr << "shears-windows: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  auto cl = shears::CommandLine::Parse(argc, argv, {});
  if (!cl.ok() || cl->words().size() != 1 || !cl->Get("model") || !cl->Get("data")) {
    std::cerr << "usage: shears-windows --model DIR --data FILE --seq-len T "
                 "(--samples N [--seed S] | [--max-tokens M]) OUT\n";
    return 2;
  }
  if (auto st = cl->CheckKnown({"model", "data", "seq-len", "samples", "seed", "max-tokens"}); !st.ok()) {
    return Fail(std::string(st.message()));
  }
  auto seq_len = cl->GetInt("seq-len", 0);
  auto samples = cl->GetInt("samples", 0);
  auto seed = cl->GetInt("seed", 0);
  auto max_tokens = cl->GetInt("max-tokens", 0);
  for (const auto* v : {&seq_len, &samples, &seed, &max_tokens}) {
    if (!v->ok()) return Fail(std::string(v->status().message()));
  }
  auto model = shears::engine::ModelDir::Open(*cl->Get("model"));
  if (!model.ok()) return Fail(std::string(model.status().message()));
  auto config = shears::engine::ModelConfig::Parse((*model)->config());
  if (!config.ok()) return Fail(std::string(config.status().message()));
  shears::engine::JobDatasets data(**model, *config);
  auto windows = *samples > 0 ? data.CalibrationWindows({*cl->Get("data"), *samples, *seq_len,
                                                          static_cast<uint64_t>(*seed)})
                              : data.EvaluationWindows({*cl->Get("data"), *seq_len, *max_tokens});
  if (!windows.ok()) return Fail(std::string(windows.status().message()));
  const torch::Tensor ids = windows->to(torch::kInt64).contiguous();
  std::ofstream out(cl->words()[0], std::ios::binary);
  out.write(reinterpret_cast<const char*>(ids.data_ptr<int64_t>()), ids.numel() * sizeof(int64_t));
  if (!out.flush()) return Fail("cannot write " + cl->words()[0]);
  std::cout << ids.size(0) << " windows of " << ids.size(1) << " tokens\n";
  return 0;
}
