// Structured pruning that makes models smaller, compared as the papers compare it: FFN neurons
// removed by magnitude or at random (uniform or global allocation) at 25% and 50%, and 25% of the
// blocks removed by Block Influence against the last blocks and random blocks. Each run is a
// separate `shears-worker run-local`; prints Markdown with the Block Influence before and after.
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

struct Job {
  std::string label;
  std::string spec;  // JSON members of the JobSpec besides the data and the output
};

using shears::bench::Format;

// The mean over the FFNs of `field` (a JSON pointer) of the `model`'s redundancy measures.
double FfnMean(const nlohmann::json& result, const std::string& model, const std::string& field) {
  double sum = 0;
  int count = 0;
  for (const auto& r : result.value("redundancy", nlohmann::json::array())) {
    if (r["model"] != model) continue;
    for (const auto& f : r.value("ffns", nlohmann::json::array())) {
      sum += f.value(nlohmann::json::json_pointer(field), 0.0);
      ++count;
    }
  }
  return count == 0 ? 0.0 : sum / count;
}

// The Block Influence of each block, as "0.12 0.08 ...".
std::string Influences(const nlohmann::json& result, const std::string& model) {
  std::vector<std::string> out;
  for (const auto& r : result.value("redundancy", nlohmann::json::array())) {
    if (r["model"] != model) continue;
    for (const auto& b : r["blocks"]) out.push_back(Format("%.3f", b.value("block_influence", 0.0)));
  }
  return absl::StrJoin(out, " ");
}

int Table(const std::string& build, const std::string& work, const std::string& kjv, const std::string& model,
          const std::string& title, const std::vector<Job>& jobs) {
  std::cout << "\n" << title << " (`" << model << "`):\n\n"
            << "| job | perplexity | removed parameters | blocks removed | Block Influence after | FFN max cosine "
               "after | FFN effective rank after | seconds |\n"
            << "|---|---:|---:|---|---|---:|---:|---:|\n";
  int failures = 0;
  std::string dense_line, dense_influence, dense_ffn;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const std::string spec = absl::StrCat(work, "/job", i, ".json"), log = absl::StrCat(work, "/job", i, ".log");
    (void)shears::WriteFileAtomically(
        spec, absl::StrCat("{\"model_uri\": \"file://", model, "\", ", jobs[i].spec,
                           ", \"calibration\": {\"dataset_uri\": \"file://", kjv,
                           "/train.txt\", \"num_samples\": 64, \"seq_len\": 128, \"seed\": 0}"
                           ", \"evaluation\": {\"dataset_uri\": \"file://", kjv,
                           "/test.txt\", \"seq_len\": 128}, \"output\": {\"uri\": \"file://", work, "/out", i, "\"}}"));
    shears::bench::Run run = shears::bench::RunWorker(build + "/worker/shears-worker", spec, work + "/scratch", log);
    nlohmann::json result = shears::bench::ReadResult(log);
    std::filesystem::remove_all(absl::StrCat(work, "/out", i));
    if (run.status != 0 || !result.is_object() || !result.contains("evaluation")) {
      std::cerr << jobs[i].label << " failed; see " << log << "\n";
      ++failures;
      continue;
    }
    if (dense_line.empty()) {
      dense_line = Format("%.2f", result["evaluation"]["dense_perplexity"].get<double>());
      dense_influence = Influences(result, "dense");
      dense_ffn = absl::StrCat("FFN max cosine ", Format("%.3f", FfnMean(result, "dense", "/max_cosine/mean")),
                               ", FFN effective rank ", Format("%.1f", FfnMean(result, "dense", "/effective_rank")));
    }
    const double before = std::stod(result["model_parameters_before"].get<std::string>());
    const double after = std::stod(result["model_parameters_after"].get<std::string>());
    std::vector<std::string> removed;
    for (const auto& b : result.value("removed_blocks", nlohmann::json::array())) removed.push_back(b.dump());
    std::cout << "| " << jobs[i].label << " | " << Format("%.2f", result["evaluation"]["pruned_perplexity"].get<double>())
              << " | " << Format("%.1f%%", 100.0 * (before - after) / before) << " of the model | "
              << (removed.empty() ? "-" : absl::StrJoin(removed, ", ")) << " | " << Influences(result, "pruned")
              << " | " << Format("%.3f", FfnMean(result, "pruned", "/max_cosine/mean")) << " | "
              << Format("%.1f", FfnMean(result, "pruned", "/effective_rank")) << " | " << Format("%.1f", run.seconds)
              << " |\n";
  }
  std::cout << "\nDense: perplexity " << dense_line << ", Block Influence of each block " << dense_influence << ", "
            << dense_ffn << " (means over the FFNs)\n";
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: structured_table BUILD_DIR WORK_DIR FFN_MODEL_DIR DEEP_MODEL_DIR\n";
    return 2;
  }
  const std::string build = argv[1], work = argv[2];
  const std::string ffn_model = std::filesystem::absolute(argv[3]).string();
  const std::string deep_model = std::filesystem::absolute(argv[4]).string();
  std::filesystem::remove_all(work);
  const std::string kjv = work + "/kjv";
  std::filesystem::create_directories(kjv);
  if (std::system((build + "/tools/shears-kjv-splits " + kjv + " > /dev/null").c_str()) != 0) return 1;

  std::cout << "Perplexity on the KJV test split (windows of 128); calibration (Block Influence) 64 windows of "
               "128 tokens from the train split; no fine-tuning.\n";
  std::vector<Job> ffn;
  for (const char* share : {"0.25", "0.5"}) {
    for (const char* method : {"MAGNITUDE", "RANDOM"}) {
      for (const char* allocation : {"UNIFORM", "GLOBAL"}) {
        ffn.push_back({absl::StrCat(method, " ", share, " ", allocation),
                       absl::StrCat("\"method\": \"METHOD_", method, "\", \"structure\": \"STRUCTURE_FFN_NEURONS\", "
                                    "\"target_sparsity\": ", share, ", \"allocation\": \"ALLOCATION_", allocation, "\"")});
      }
    }
  }
  int failures = Table(build, work, kjv, ffn_model, "FFN neurons", ffn);
  std::vector<Job> layers = {
      {"BLOCK_INFLUENCE 25%", "\"method\": \"METHOD_BLOCK_INFLUENCE\", \"structure\": \"STRUCTURE_LAYERS\", "
                              "\"target_sparsity\": 0.25"},
      {"LAST_BLOCKS 25%", "\"method\": \"METHOD_LAST_BLOCKS\", \"structure\": \"STRUCTURE_LAYERS\", "
                          "\"target_sparsity\": 0.25"},
  };
  for (int seed = 0; seed < 3; ++seed) {
    layers.push_back({absl::StrCat("RANDOM 25% (seed ", seed, ")"),
                      absl::StrCat("\"method\": \"METHOD_RANDOM\", \"structure\": \"STRUCTURE_LAYERS\", "
                                   "\"target_sparsity\": 0.25, \"seed\": ", seed)});
  }
  failures += Table(build, work, kjv, deep_model, "Blocks", layers);
  std::filesystem::remove_all(work);
  return failures == 0 ? 0 : 1;
}
