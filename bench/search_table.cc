// The accuracy-predictor search of FFN neuron shares against the uniform share: magnitude-scored
// FFN neurons (a share per block, removed physically) at 25% and 50%, three seeds each (the seed
// draws the sampled configurations and drives the search); perplexity on the KJV test split.
// Unstructured sparsities (Wanda, SparseGPT) against uniform and OWL are allocation_table's.
// Each run is a separate `shears-worker run-local`; prints Markdown.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/format.h"
#include "bench/run_worker.h"
#include "common/files.h"

namespace {

using shears::bench::Format;

constexpr int kSeeds = 3;

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: search_table BUILD_DIR WORK_DIR MODEL_DIR\n";
    return 2;
  }
  const std::string build = argv[1], work = argv[2], model = std::filesystem::absolute(argv[3]).string();
  std::filesystem::remove_all(work);
  const std::string kjv = work + "/kjv";
  std::filesystem::create_directories(kjv);
  if (std::system((build + "/tools/shears-kjv-splits " + kjv + " > /dev/null").c_str()) != 0) return 1;

  std::cout << "Predictor search of FFN neuron shares on `" << model
            << "`, its defaults (60 measured configurations, 2000 scored by the predictor, shares within 0.25 of "
               "the target); calibration 128 windows of 128 tokens from the train split, 8 more held out to score "
               "configurations; perplexity on the KJV test split (windows of 128). Uniform and searched remove "
               "exactly the same number of neurons; the chosen share is per block, attention is not pruned.\n\n"
            << "| base | target | seed | dense | uniform | searched | change | held-out uniform → searched "
               "| rank correlation | chosen (attention / MLP per block) | search s | job s |\n"
            << "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|\n";
  struct Setting {
    const char* base;
    const char* structure;
    std::vector<const char*> targets;
  };
  const std::vector<Setting> settings = {{"MAGNITUDE", "STRUCTURE_FFN_NEURONS", {"0.25", "0.5"}}};
  int failures = 0;
  for (const auto& [base, structure, targets] : settings) {
    for (const char* target : targets) {
      double change_sum = 0;
      int done = 0;
      for (int seed = 0; seed < kSeeds; ++seed) {
        const std::string name = absl::StrCat(base, "-", structure, "-", target, "-", seed);
        const std::string spec = absl::StrCat(work, "/", name, ".json"), log = absl::StrCat(work, "/", name, ".log");
        (void)shears::WriteFileAtomically(
            spec, absl::StrCat("{\"model_uri\": \"file://", model,
                               "\", \"method\": \"METHOD_PREDICTOR_SEARCH\", \"structure\": \"", structure,
                               "\", \"target_sparsity\": ", target,
                               ", \"seed\": ", seed, ", \"search\": {\"base_method\": \"METHOD_", base,
                               "\"}, \"calibration\": {\"dataset_uri\": \"file://", kjv,
                               "/train.txt\", \"num_samples\": 128, \"seq_len\": 128, \"seed\": 0}"
                               ", \"evaluation\": {\"dataset_uri\": \"file://", kjv,
                               "/test.txt\", \"seq_len\": 128}, \"output\": {\"uri\": \"file://", work, "/out\"}}"));
        shears::bench::Run run = shears::bench::RunWorker(build + "/worker/shears-worker", spec, work + "/scratch", log);
        nlohmann::json result = shears::bench::ReadResult(log);
        std::filesystem::remove_all(work + "/out");
        if (run.status != 0 || !result.is_object() || !result.contains("search")) {
          std::cerr << name << " failed; see " << log << "\n";
          ++failures;
          continue;
        }
        const auto& search = result["search"];
        const double uniform = search["uniform_perplexity"].get<double>();
        const double searched = result["evaluation"]["pruned_perplexity"].get<double>();
        const double change = 100.0 * (searched - uniform) / uniform;
        change_sum += change;
        ++done;
        std::vector<std::string> chosen;
        for (const auto& b : search["sparsity"]) {
          chosen.push_back(absl::StrCat(Format("%.2f", b.value("attention", 0.0)), " / ",
                                        Format("%.2f", b.value("mlp", 0.0))));
        }
        const std::string label = absl::StrCat(base, std::string(structure) == "STRUCTURE_FFN_NEURONS" ? " FFN neurons" : "");
        std::cout << "| " << label << " | " << target << " | " << seed << " | "
                  << Format("%.2f", result["evaluation"]["dense_perplexity"].get<double>()) << " | "
                  << Format("%.2f", uniform) << " | " << Format("%.2f", searched) << " | "
                  << Format("%+.2f%%", change) << " | " << Format("%.2f", search["uniform_score"].get<double>())
                  << " → " << Format("%.2f", search["searched_score"].get<double>()) << " | "
                  << Format("%.3f", search["validation_rank_correlation"].get<double>()) << " | "
                  << absl::StrJoin(chosen, ", ") << " | " << Format("%.1f", search["search_seconds"].get<double>())
                  << " | " << Format("%.1f", run.seconds) << " |\n";
      }
      if (done > 0) {
        std::cout << "| " << base << (std::string(structure) == "STRUCTURE_FFN_NEURONS" ? " FFN neurons" : "") << " | "
                  << target << " | mean | | | | " << Format("%+.2f%%", change_sum / done)
                  << " | | | | | |\n";
      }
    }
  }
  std::filesystem::remove_all(work);
  return failures == 0 ? 0 : 1;
}
