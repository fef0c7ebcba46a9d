// Structured pruning that makes models smaller, compared as the papers compare it:
//  - FFN neurons removed by magnitude or at random (uniform or global allocation), one-shot;
//  - FFN neurons removed while fine-tuning, every score with the same fine-tuning budget:
//    magnitude, random, movement and GUM (with and without distillation);
//  - low-rank factorization: activation-aware SVD (training-free) against FLOP (fine-tuned);
//  - 25% of the blocks removed by Block Influence against the last blocks and random blocks.
// Each run is a separate `shears-worker run-local`; prints Markdown with the redundancy measures
// of the dense model and of each pruned one.
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

constexpr int kFineTuneSteps = 300;

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

// The FFN measures of `model` as table cells: max cosine, uniqueness, sensitivity, effective rank.
std::string FfnCells(const nlohmann::json& result, const std::string& model) {
  return absl::StrCat(Format("%.3f", FfnMean(result, model, "/max_cosine/mean")), " | ",
                      Format("%.3f", FfnMean(result, model, "/uniqueness/mean")), " | ",
                      Format("%.2e", FfnMean(result, model, "/sensitivity/mean")), " | ",
                      Format("%.1f", FfnMean(result, model, "/effective_rank")));
}

std::string FineTune(const std::string& kjv, bool distill = false) {
  return absl::StrCat("\"fine_tune\": {\"dataset_uri\": \"file://", kjv, "/train.txt\", \"steps\": ", kFineTuneSteps,
                      ", \"batch_size\": 8, \"seq_len\": 128, \"learning_rate\": 0.0001",
                      distill ? ", \"distill\": true" : "", "}");
}

int Table(const std::string& build, const std::string& work, const std::string& kjv, const std::string& model,
          const std::string& title, const std::vector<Job>& jobs) {
  std::cout << "\n" << title << " (`" << model << "`):\n\n"
            << "| job | perplexity | removed parameters | blocks removed | Block Influence after | FFN max cosine "
               "| FFN uniqueness | FFN sensitivity | FFN effective rank | seconds |\n"
            << "|---|---:|---:|---|---|---:|---:|---:|---:|---:|\n";
  int failures = 0;
  std::string dense_line;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const std::string spec = absl::StrCat(work, "/job", i, ".json"), log = absl::StrCat(work, "/job", i, ".log");
    (void)shears::WriteFileAtomically(
        spec, absl::StrCat("{\"model_uri\": \"file://", model, "\", ", jobs[i].spec,
                           ", \"calibration\": {\"dataset_uri\": \"file://", kjv,
                           "/train.txt\", \"num_samples\": 64, \"seq_len\": 128, \"seed\": 0}"
                           ", \"neuron_measures\": true, \"evaluation\": {\"dataset_uri\": \"file://", kjv,
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
      dense_line = absl::StrCat("| dense | ", Format("%.2f", result["evaluation"]["dense_perplexity"].get<double>()),
                                " | - | - | ", Influences(result, "dense"), " | ", FfnCells(result, "dense"), " | - |");
    }
    const double before = std::stod(result["model_parameters_before"].get<std::string>());
    const double after = std::stod(result["model_parameters_after"].get<std::string>());
    std::vector<std::string> removed;
    for (const auto& b : result.value("removed_blocks", nlohmann::json::array())) removed.push_back(b.dump());
    std::cout << "| " << jobs[i].label << " | " << Format("%.2f", result["evaluation"]["pruned_perplexity"].get<double>())
              << " | " << Format("%.1f%%", 100.0 * (before - after) / before) << " of the model | "
              << (removed.empty() ? "-" : absl::StrJoin(removed, ", ")) << " | " << Influences(result, "pruned")
              << " | " << FfnCells(result, "pruned") << " | " << Format("%.1f", run.seconds) << " |\n";
  }
  std::cout << dense_line << "\n";
  return failures;
}

std::string FfnSpec(const std::string& method, const std::string& share, const std::string& extra) {
  return absl::StrCat("\"method\": \"METHOD_", method, "\", \"structure\": \"STRUCTURE_FFN_NEURONS\", "
                      "\"target_sparsity\": ", share, extra.empty() ? "" : ", ", extra);
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

  std::cout << "Perplexity on the KJV test split (windows of 128); calibration (Block Influence, SVD and every "
               "redundancy measure) 64 windows of 128 tokens from the train split. Fine-tuning, where a job has it: "
            << kFineTuneSteps
            << " steps of 8 windows of 128 tokens from the train split, AdamW at 1e-4 (10% warm-up, cosine). "
               "FFN measures are means over the FFNs of the neuron means.\n";
  std::vector<Job> one_shot;
  for (const char* share : {"0.25", "0.5"}) {
    for (const char* method : {"MAGNITUDE", "RANDOM"}) {
      for (const char* allocation : {"UNIFORM", "GLOBAL"}) {
        one_shot.push_back({absl::StrCat(method, " ", share, " ", allocation),
                            FfnSpec(method, share, absl::StrCat("\"allocation\": \"ALLOCATION_", allocation, "\""))});
      }
    }
  }
  int failures = Table(build, work, kjv, ffn_model, "FFN neurons, one-shot (no fine-tuning)", one_shot);

  std::vector<Job> tuned = {{"dense, fine-tuned (no neuron removed)", FfnSpec("MAGNITUDE", "0", FineTune(kjv))}};
  for (const char* share : {"0.25", "0.5"}) {
    for (const char* method : {"MAGNITUDE", "RANDOM", "MOVEMENT", "GUM"}) {
      tuned.push_back({absl::StrCat(method, " ", share), FfnSpec(method, share, FineTune(kjv))});
    }
    for (const char* method : {"MAGNITUDE", "RANDOM", "MOVEMENT", "GUM"}) {
      tuned.push_back({absl::StrCat(method, " ", share, " + distillation"), FfnSpec(method, share, FineTune(kjv, true))});
    }
  }
  failures += Table(build, work, kjv, ffn_model, "FFN neurons pruned while fine-tuning, same budget for every score",
                    tuned);

  std::vector<Job> rank;
  for (const char* share : {"0.3", "0.5"}) {
    const std::string common = absl::StrCat("\"method\": \"METHOD_LOW_RANK\", \"target_sparsity\": ", share);
    rank.push_back({absl::StrCat("activation-aware SVD ", share), common});
    rank.push_back({absl::StrCat("FLOP ", share),
                    absl::StrCat(common, ", \"low_rank\": {\"algorithm\": \"LOW_RANK_FLOP\"}, ", FineTune(kjv))});
  }
  failures += Table(build, work, kjv, ffn_model,
                    "Low rank (target: share of the block linears' parameters; removed: share of the whole model's)",
                    rank);

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
