// Perplexity, wall time and peak memory of the calibrated methods against magnitude pruning, the
// comparison every paper makes: each method at 50%, 2:4, 70% and 80% on one model, with the same
// calibration windows, each run a separate `shears-worker run-local` process. Prints Markdown.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "bench/run_worker.h"
#include "common/files.h"

namespace {

struct Target {
  std::string label;
  std::string spec;  // JSON members of the JobSpec
};

struct Cell {
  double perplexity = 0.0, dense = 0.0, seconds = 0.0, rss_mib = 0.0;
  bool ok = false;
};

// The JobResult that run-local prints last.
nlohmann::json ResultOf(const std::string& log) {
  std::ifstream in(log);
  std::string line, json;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line == "{") inside = true;
    if (inside) json += line + "\n";
  }
  return nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: method_table BUILD_DIR WORK_DIR MODEL_DIR CALIBRATION_SAMPLES\n";
    return 2;
  }
  const std::string build = argv[1], work = argv[2], model = std::filesystem::absolute(argv[3]).string();
  const int samples = std::stoi(argv[4]);
  const int seq_len = 128;
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work);
  const std::string kjv = work + "/kjv";
  std::filesystem::create_directories(kjv);
  if (std::system((build + "/tools/shears-kjv-splits " + kjv + " > /dev/null").c_str()) != 0) return 1;

  const std::vector<std::string> methods = {"MAGNITUDE", "WANDA", "SPARSEGPT", "SPARSELLM"};
  const std::vector<Target> targets = {
      {"50%", "\"target_sparsity\": 0.5"},
      {"2:4", "\"structure\": \"STRUCTURE_N_M\", \"n_m\": {\"n\": 2, \"m\": 4}"},
      {"70%", "\"target_sparsity\": 0.7"},
      {"80%", "\"target_sparsity\": 0.8"},
  };
  std::map<std::string, std::map<std::string, Cell>> cells;
  int failures = 0;
  for (const auto& method : methods) {
    for (const auto& target : targets) {
      const std::string name = absl::StrCat(method, "-", target.label.substr(0, 1), target.label.size());
      const std::string spec = absl::StrCat(work, "/", name, ".json");
      (void)shears::WriteFileAtomically(
          spec, absl::StrCat("{\"model_uri\": \"file://", model, "\", \"method\": \"METHOD_", method, "\", ",
                             target.spec, ", \"calibration\": {\"dataset_uri\": \"file://", kjv,
                             "/train.txt\", \"num_samples\": ", samples, ", \"seq_len\": ", seq_len,
                             ", \"seed\": 0}, \"evaluation\": {\"dataset_uri\": \"file://", kjv,
                             "/test.txt\", \"seq_len\": ", seq_len, "}, \"output\": {\"uri\": \"file://", work,
                             "/out-", name, "\"}}"));
      const std::string log = absl::StrCat(work, "/", name, ".log");
      shears::bench::Run run = shears::bench::RunWorker(build + "/worker/shears-worker", spec, work + "/scratch", log);
      Cell& cell = cells[method][target.label];
      nlohmann::json result = ResultOf(log);
      if (run.status != 0 || !result.is_object() || !result.contains("evaluation")) {
        std::cerr << method << " " << target.label << " failed; see " << log << "\n";
        ++failures;
        continue;
      }
      cell = {result["evaluation"]["pruned_perplexity"].get<double>(),
              result["evaluation"]["dense_perplexity"].get<double>(), run.seconds, run.peak_rss_kib / 1024.0, true};
      std::cerr << method << " " << target.label << ": perplexity " << cell.perplexity << ", " << cell.seconds
                << " s\n";
      std::filesystem::remove_all(work + "/out-" + name);
    }
  }

  auto row = [&](const std::string& label, auto value) {
    std::ostringstream line;
    line << "| " << label << " |";
    for (const auto& target : targets) line << " " << value(target.label) << " |";
    std::cout << line.str() << "\n";
  };
  auto header = [&](const std::string& first) {
    std::cout << "| " << first << " |";
    for (const auto& target : targets) std::cout << " " << target.label << " |";
    std::cout << "\n|---|";
    for (size_t i = 0; i < targets.size(); ++i) std::cout << "---:|";
    std::cout << "\n";
  };
  auto format = [](const char* fmt, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, fmt, v);
    return std::string(buf);
  };
  std::cout << "Perplexity on the KJV test split (windows of " << seq_len << "), calibration " << samples
            << " windows of " << seq_len << " tokens from the train split, seed 0:\n\n";
  header("method");
  const Cell& any = cells["MAGNITUDE"]["50%"];
  row("dense", [&](const std::string&) { return format("%.2f", any.dense); });
  for (const auto& method : methods) {
    row(method, [&](const std::string& t) { return cells[method][t].ok ? format("%.2f", cells[method][t].perplexity) : "failed"; });
  }
  std::cout << "\nWall time of the whole run-local job (load, calibrate, prune, evaluate both models, write), "
               "seconds:\n\n";
  header("method");
  for (const auto& method : methods) {
    row(method, [&](const std::string& t) { return format("%.1f", cells[method][t].seconds); });
  }
  std::cout << "\nPeak resident memory of the worker process, MiB:\n\n";
  header("method");
  for (const auto& method : methods) {
    row(method, [&](const std::string& t) { return format("%.0f", cells[method][t].rss_mib); });
  }
  std::filesystem::remove_all(work);
  return failures == 0 ? 0 : 1;
}
