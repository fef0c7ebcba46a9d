// Per-block sparsity against one sparsity for every block, at the same budget: uniform, OWL
// (ALLOCATION_OWL, its published defaults) and the predictor search (METHOD_PREDICTOR_SEARCH, its
// defaults), each pruned by Wanda and by SparseGPT at 50%, 60% and 70%, on every model named; KJV
// test perplexity (windows of 128) and the seconds each took. The search's job also prunes and
// evaluates the uniform configuration, which gives the uniform column.
// Each run is a separate `shears-worker run-local`; prints Markdown.
//
//   allocation_table BUILD_DIR WORK_DIR [--targets 0.5,0.6,0.7] [--bases WANDA,SPARSEGPT]
//                    [--search JSON] NAME=MODEL_DIR...
//
// --search merges its JSON object into every search job's "search" options (for trying settings).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/format.h"
#include "bench/run_worker.h"
#include "common/files.h"

namespace {

using shears::bench::Format;

struct Model {
  std::string name, dir;
};

struct Outcome {
  bool ok = false;
  nlohmann::json result;
  double seconds = 0.0;
};

// One run-local job: `method` with `extra` spec fields, calibrated and evaluated on the KJV splits.
Outcome RunJob(const std::string& build, const std::string& work, const std::string& kjv, const Model& model,
               const std::string& name, const nlohmann::json& extra) {
  nlohmann::json spec = {
      {"model_uri", "file://" + model.dir},
      {"calibration", {{"dataset_uri", "file://" + kjv + "/train.txt"}, {"num_samples", 128}, {"seq_len", 128}, {"seed", 0}}},
      {"evaluation", {{"dataset_uri", "file://" + kjv + "/test.txt"}, {"seq_len", 128}}},
      {"output", {{"uri", "file://" + work + "/out"}}}};
  spec.update(extra);
  const std::string path = absl::StrCat(work, "/", name, ".json"), log = absl::StrCat(work, "/", name, ".log");
  (void)shears::WriteFileAtomically(path, spec.dump(2));
  shears::bench::Run run = shears::bench::RunWorker(build + "/worker/shears-worker", path, work + "/scratch", log);
  std::filesystem::remove_all(work + "/out");
  Outcome out;
  out.result = shears::bench::ReadResult(log);
  out.seconds = run.seconds;
  out.ok = run.status == 0 && out.result.is_object() && out.result.contains("evaluation");
  if (!out.ok) std::cerr << name << " failed; see " << log << "\n";
  return out;
}

std::string Change(double value, double baseline) { return Format("%+.1f%%", 100.0 * (value - baseline) / baseline); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: allocation_table BUILD_DIR WORK_DIR [--targets 0.5,0.6,0.7] [--bases WANDA,SPARSEGPT] "
                 "[--search JSON] NAME=MODEL_DIR...\n";
    return 2;
  }
  const std::string build = argv[1], work = std::filesystem::absolute(argv[2]).string();
  std::vector<std::string> targets = {"0.5", "0.6", "0.7"}, bases = {"WANDA", "SPARSEGPT"};
  nlohmann::json search_extra = nlohmann::json::object();
  std::vector<Model> models;
  for (int i = 3; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--targets" || arg == "--bases" || arg == "--search") && i + 1 < argc) {
      const std::string value = argv[++i];
      if (arg == "--targets") targets = absl::StrSplit(value, ',');
      if (arg == "--bases") bases = absl::StrSplit(value, ',');
      if (arg == "--search") search_extra = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
      if (!search_extra.is_object()) {
        std::cerr << "--search: not a JSON object\n";
        return 2;
      }
      continue;
    }
    const std::vector<std::string> parts = absl::StrSplit(arg, absl::MaxSplits('=', 1));
    if (parts.size() != 2) {
      std::cerr << "expected NAME=MODEL_DIR, got " << arg << "\n";
      return 2;
    }
    models.push_back({parts[0], std::filesystem::absolute(parts[1]).string()});
  }
  std::filesystem::remove_all(work);
  const std::string kjv = work + "/kjv";
  std::filesystem::create_directories(kjv);
  if (std::system((build + "/tools/shears-kjv-splits " + kjv + " > /dev/null").c_str()) != 0) return 1;

  std::cout << "Uniform, OWL (M 5, λ 0.08) and the predictor search (its defaults"
            << (search_extra.empty() ? "" : absl::StrCat(", with ", search_extra.dump()))
            << "), the same number of weights removed by each; calibration 128 windows of 128 tokens from the KJV "
               "train split (the search holds out more, after them, to score configurations); perplexity on the KJV "
               "test split, windows of 128. Changes are against uniform; \"vs OWL\" is searched against OWL.\n\n"
            << "| model | base | target | dense | uniform | OWL | searched | OWL vs uniform | searched vs uniform "
               "| searched vs OWL | held-out uniform → searched | rank correlation | search s | OWL job s |\n"
            << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n";
  int failures = 0;
  for (const Model& model : models) {
    for (const std::string& base : bases) {
      for (const std::string& target : targets) {
        const double sparsity = std::stod(target);
        const std::string name = absl::StrCat(model.name, "-", base, "-", target);
        nlohmann::json search = {{"base_method", "METHOD_" + base}};
        search.update(search_extra);
        const Outcome searched = RunJob(build, work, kjv, model, name + "-search",
                                        {{"method", "METHOD_PREDICTOR_SEARCH"}, {"target_sparsity", sparsity},
                                         {"search", search}});
        const Outcome owl = RunJob(build, work, kjv, model, name + "-owl",
                                   {{"method", "METHOD_" + base}, {"target_sparsity", sparsity},
                                    {"allocation", "ALLOCATION_OWL"}});
        if (!searched.ok || !owl.ok) {
          ++failures;
          continue;
        }
        const auto& s = searched.result["search"];
        const double dense = owl.result["evaluation"]["dense_perplexity"].get<double>();
        const double uniform = s["uniform_perplexity"].get<double>();
        const double owl_ppl = owl.result["evaluation"]["pruned_perplexity"].get<double>();
        const double searched_ppl = searched.result["evaluation"]["pruned_perplexity"].get<double>();
        std::cout << "| " << model.name << " | " << base << " | " << target << " | " << Format("%.2f", dense) << " | "
                  << Format("%.2f", uniform) << " | " << Format("%.2f", owl_ppl) << " | "
                  << Format("%.2f", searched_ppl) << " | " << Change(owl_ppl, uniform) << " | "
                  << Change(searched_ppl, uniform) << " | " << Change(searched_ppl, owl_ppl) << " | "
                  << Format("%.2f", s["uniform_score"].get<double>()) << " → "
                  << Format("%.2f", s["searched_score"].get<double>()) << " | "
                  << Format("%.3f", s["validation_rank_correlation"].get<double>()) << " | "
                  << Format("%.0f", s["search_seconds"].get<double>()) << " | " << Format("%.0f", owl.seconds)
                  << " |" << std::endl;
      }
    }
  }
  std::filesystem::remove_all(work);
  return failures == 0 ? 0 : 1;
}
