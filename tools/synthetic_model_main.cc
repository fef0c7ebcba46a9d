// shears-synthetic-model: a llama model with random weights, for benchmarks.
#include <iostream>

#include "common/command_line.h"
#include "tools/synthetic_model.h"

int main(int argc, char** argv) {
  auto cl = shears::CommandLine::Parse(argc, argv, {});
  if (!cl.ok() || cl->words().size() != 1) {
    std::cerr << "usage: shears-synthetic-model [--blocks N] [--hidden D] [--ffn F] [--heads H] [--vocab V] "
                 "[--seed S] OUT_DIR\n";
    return 2;
  }
  shears::tools::SyntheticLlama shape;
  for (auto [flag, field] : {std::pair{"blocks", &shape.blocks}, std::pair{"hidden", &shape.hidden},
                             std::pair{"ffn", &shape.ffn}, std::pair{"heads", &shape.heads},
                             std::pair{"vocab", &shape.vocab}}) {
    auto v = cl->GetInt(flag, *field);
    if (!v.ok()) {
      std::cerr << "shears-synthetic-model: " << v.status().message() << "\n";
      return 2;
    }
    *field = static_cast<int>(*v);
  }
  shape.seed = static_cast<uint64_t>(cl->GetInt("seed", 0).value_or(0));
  if (auto st = shears::tools::WriteSyntheticLlama(shape, cl->words()[0]); !st.ok()) {
    std::cerr << "shears-synthetic-model: " << st.message() << "\n";
    return 1;
  }
  return 0;
}
