// Perplexity, wall time and peak memory of the calibrated methods against magnitude pruning, the
// comparison every paper makes: each method at 50%, 2:4, 70% and 80% on one model, with the same
// calibration windows, each run a separate `shears-worker run-local` process. Prints Markdown.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "bench/format.h"
#include "bench/run_worker.h"
#include "common/files.h"
#include "tools/outlier_channels.h"

namespace {

struct Target {
  std::string label;
  std::string spec;  // JSON members of the JobSpec
};

struct Cell {
  double perplexity = 0.0, dense = 0.0, seconds = 0.0, rss_mib = 0.0;
  bool ok = false;
};

// One table per model: every method at every target.
struct Table {
  std::string title;
  std::map<std::string, std::map<std::string, Cell>> cells;
};

const std::vector<std::string> kMethods = {"MAGNITUDE", "WANDA", "SPARSEGPT", "SPARSELLM"};
const std::vector<Target> kTargets = {
    {"50%", "\"target_sparsity\": 0.5"},
    {"2:4", "\"structure\": \"STRUCTURE_N_M\", \"n_m\": {\"n\": 2, \"m\": 4}"},
    {"70%", "\"target_sparsity\": 0.7"},
    {"80%", "\"target_sparsity\": 0.8"},
};
constexpr int kSeqLen = 128;

int Measure(const std::string& build, const std::string& work, const std::string& kjv, const std::string& model,
            int samples, Table& table) {
  int failures = 0;
  for (const auto& method : kMethods) {
    for (const auto& target : kTargets) {
      const std::string name = absl::StrCat(method, "-", target.label.substr(0, 1), target.label.size());
      const std::string spec = absl::StrCat(work, "/", name, ".json");
      (void)shears::WriteFileAtomically(
          spec, absl::StrCat("{\"model_uri\": \"file://", model, "\", \"method\": \"METHOD_", method, "\", ",
                             target.spec, ", \"calibration\": {\"dataset_uri\": \"file://", kjv,
                             "/train.txt\", \"num_samples\": ", samples, ", \"seq_len\": ", kSeqLen,
                             ", \"seed\": 0}, \"evaluation\": {\"dataset_uri\": \"file://", kjv,
                             "/test.txt\", \"seq_len\": ", kSeqLen, "}, \"output\": {\"uri\": \"file://", work,
                             "/out-", name, "\"}}"));
      const std::string log = absl::StrCat(work, "/", name, ".log");
      shears::bench::Run run = shears::bench::RunWorker(build + "/worker/shears-worker", spec, work + "/scratch", log);
      Cell& cell = table.cells[method][target.label];
      nlohmann::json result = shears::bench::ReadResult(log);
      if (run.status != 0 || !result.is_object() || !result.contains("evaluation")) {
        std::cerr << method << " " << target.label << " failed; see " << log << "\n";
        ++failures;
        continue;
      }
      cell = {result["evaluation"]["pruned_perplexity"].get<double>(),
              result["evaluation"]["dense_perplexity"].get<double>(), run.seconds, run.peak_rss_kib / 1024.0, true};
      std::cerr << table.title << ", " << method << " " << target.label << ": perplexity " << cell.perplexity << ", "
                << cell.seconds << " s\n";
      std::filesystem::remove_all(work + "/out-" + name);
    }
  }
  return failures;
}

using shears::bench::Format;

void PrintTable(Table& table, const std::string& caption, const std::function<std::string(const Cell&)>& value,
                bool with_dense) {
  std::cout << "\n" << caption << "\n\n| " << table.title << " |";
  for (const auto& target : kTargets) std::cout << " " << target.label << " |";
  std::cout << "\n|---|";
  for (size_t i = 0; i < kTargets.size(); ++i) std::cout << "---:|";
  std::cout << "\n";
  if (with_dense) {
    std::cout << "| dense |";
    for (size_t i = 0; i < kTargets.size(); ++i) std::cout << " " << Format("%.2f", table.cells["MAGNITUDE"]["50%"].dense) << " |";
    std::cout << "\n";
  }
  for (const auto& method : kMethods) {
    std::cout << "| " << method << " |";
    for (const auto& target : kTargets) {
      const Cell& cell = table.cells[method][target.label];
      std::cout << " " << (cell.ok ? value(cell) : "failed") << " |";
    }
    std::cout << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: method_table BUILD_DIR WORK_DIR MODEL_DIR CALIBRATION_SAMPLES\n";
    return 2;
  }
  const std::string build = argv[1], work = argv[2], model = std::filesystem::absolute(argv[3]).string();
  const int samples = std::stoi(argv[4]);
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work);
  const std::string kjv = work + "/kjv";
  std::filesystem::create_directories(kjv);
  if (std::system((build + "/tools/shears-kjv-splits " + kjv + " > /dev/null").c_str()) != 0) return 1;
  // The same model with the outlier features of large LLMs: four hidden channels whose
  // activations are 20 times larger, the function unchanged.
  const std::string outliers = work + "/with-outliers";
  if (auto st = shears::tools::WriteWithOutlierChannels(model, outliers, {3, 21, 40, 58}, 20.0); !st.ok()) {
    std::cerr << st.message() << "\n";
    return 1;
  }

  std::vector<Table> tables = {{std::filesystem::path(model).filename().string(), {}},
                               {"with outlier channels", {}}};
  int failures = Measure(build, work, kjv, model, samples, tables[0]);
  failures += Measure(build, work, kjv, outliers, samples, tables[1]);

  std::cout << "Perplexity on the KJV test split (windows of " << kSeqLen << "), calibration " << samples
            << " windows of " << kSeqLen << " tokens from the train split, seed 0.\n";
  for (auto& table : tables) {
    PrintTable(table, "Perplexity, " + table.title + ":", [](const Cell& c) { return Format("%.2f", c.perplexity); },
               true);
  }
  PrintTable(tables[0],
             "Wall time of the whole run-local job (load, calibrate, prune, evaluate both models, write), seconds:",
             [](const Cell& c) { return Format("%.1f", c.seconds); }, false);
  PrintTable(tables[0], "Peak resident memory of the worker process, MiB:",
             [](const Cell& c) { return Format("%.0f", c.rss_mib); }, false);
  std::filesystem::remove_all(work);
  return failures == 0 ? 0 : 1;
}
