// shears-synthetic-model: a llama model with random weights, for benchmarks.
#include <iostream>

#include "common/command_line.h"
#include "tools/synthetic_model.h"

int main(int argc, char** argv) {
  auto cl = shears::CommandLine::Parse(argc, argv, {});
  if (!cl.ok() || cl->words().size() != 1) {
    std::cerr << "usage: shears-synthetic-model [--blocks N] [--hidden D] [--ffn F] [--heads H] [--vocab V] "
                 "[--kv-heads K] [--seed S] [--dtype f32|bf16] [--shard-bytes B] OUT_DIR\n";
    return 2;
  }
  shears::tools::SyntheticLlama shape;
  for (auto [flag, field] : {std::pair{"blocks", &shape.blocks}, std::pair{"hidden", &shape.hidden},
                             std::pair{"ffn", &shape.ffn}, std::pair{"heads", &shape.heads},
                             std::pair{"vocab", &shape.vocab}, std::pair{"kv-heads", &shape.kv_heads}}) {
    auto v = cl->GetInt(flag, *field);
    if (!v.ok()) {
      std::cerr << "shears-synthetic-model: " << v.status().message() << "\n";
      return 2;
    }
    *field = static_cast<int>(*v);
  }
  shape.seed = static_cast<uint64_t>(cl->GetInt("seed", 0).value_or(0));
  auto shard_bytes = cl->GetInt("shard-bytes", 0);
  if (!shard_bytes.ok() || *shard_bytes < 0) {
    std::cerr << "shears-synthetic-model: --shard-bytes is a count of bytes, 0 for one file\n";
    return 2;
  }
  shape.shard_bytes = *shard_bytes;
  const std::string dtype = cl->GetOr("dtype", "f32");
  if (dtype != "f32" && dtype != "bf16") {
    std::cerr << "shears-synthetic-model: --dtype is f32 or bf16, not " << dtype << "\n";
    return 2;
  }
  shape.bf16 = dtype == "bf16";
  if (auto st = shears::tools::WriteSyntheticLlama(shape, cl->words()[0]); !st.ok()) {
    std::cerr << "shears-synthetic-model: " << st.message() << "\n";
    return 1;
  }
  return 0;
}
