// Peak resident memory of `shears-worker run-local` magnitude-pruning synthetic llama models of
// the same width and different depths. Layer-by-layer execution promises that memory follows one
// block, not the model: the deep model's peak should stay within 1.25x of the shallow one's.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "bench/run_worker.h"
#include "common/files.h"
#include "tools/synthetic_model.h"

namespace {

constexpr double kMaxRatio = 1.25;

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: peak_rss_bench BUILD_DIR WORK_DIR\n";
    return 2;
  }
  const std::string build = argv[1], work = argv[2];
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work);
  shears::tools::SyntheticLlama shape;
  shape.hidden = 768;
  shape.ffn = 2048;
  shape.heads = 12;
  const double block_mib = (4.0 * shape.hidden * shape.hidden + 3.0 * shape.hidden * shape.ffn) * 4 / (1 << 20);
  std::printf("peak RSS of shears-worker run-local, magnitude 50%%, llama hidden %d ffn %d (%.1f MiB a block)\n",
              shape.hidden, shape.ffn, block_mib);
  std::vector<std::pair<int, shears::bench::Run>> runs;
  for (int blocks : {4, 32}) {
    shape.blocks = blocks;
    const std::string model = work + "/model-" + std::to_string(blocks);
    if (auto st = shears::tools::WriteSyntheticLlama(shape, model); !st.ok()) {
      std::cerr << st.message() << "\n";
      return 1;
    }
    const std::string spec = work + "/spec-" + std::to_string(blocks) + ".json";
    (void)shears::WriteFileAtomically(spec, "{\"model_uri\": \"file://" + model +
                                                "\", \"method\": \"METHOD_MAGNITUDE\", \"target_sparsity\": 0.5, "
                                                "\"output\": {\"uri\": \"file://" + work + "/out-" +
                                                std::to_string(blocks) + "\"}}");
    shears::bench::Run run = shears::bench::RunWorker(build + "/worker/shears-worker", spec, work + "/scratch", work + "/log-" + std::to_string(blocks));
    if (run.status != 0) {
      std::cerr << "run-local failed for " << blocks << " blocks; see " << work << "/log-" << blocks << "\n";
      return 1;
    }
    std::printf("  %2d blocks (%6.0f MiB of weights): peak RSS %7.1f MiB, %5.1f s\n", blocks, blocks * block_mib,
                run.peak_rss_kib / 1024.0, run.seconds);
    runs.emplace_back(blocks, run);
  }
  const double ratio = double(runs[1].second.peak_rss_kib) / double(runs[0].second.peak_rss_kib);
  std::printf("ratio 32/4 blocks: %.3f (target < %.2f): %s\n", ratio, kMaxRatio, ratio < kMaxRatio ? "PASS" : "FAIL");
  std::filesystem::remove_all(work);
  return ratio < kMaxRatio ? 0 : 1;
}
