#include "worker/engine/redundancy.h"

namespace shears::engine {

double BlockInfluence(const torch::Tensor& before, const torch::Tensor& after) {
  auto cos = torch::cosine_similarity(before.to(torch::kFloat64), after.to(torch::kFloat64), /*dim=*/-1);
  return 1.0 - cos.mean().item<double>();
}

RedundancyReport MeasureBlockInfluence(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model) {
  RedundancyReport report{model, {}};
  torch::Tensor hidden = runner.Embed(windows);
  for (int b = 0; b < runner.arch().num_blocks(); ++b) {
    torch::Tensor next = runner.Run(runner.LoadBlock(b), hidden);
    report.blocks.push_back({b, BlockInfluence(hidden, next)});
    hidden = next;
  }
  return report;
}

void RecordRedundancy(const BlockRunner& runner, const torch::Tensor& windows, const std::string& model,
                      const PruneObserver& observer, PruneReport& report) {
  report.redundancy.push_back(MeasureBlockInfluence(runner, windows, model));
  if (observer.on_redundancy) observer.on_redundancy(report.redundancy.back());
}

}  // namespace shears::engine
