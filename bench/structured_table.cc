// Structured pruning that makes models smaller, compared as the papers compare it:
//  - FFN neurons removed by magnitude or at random (uniform or global allocation), one-shot;
//  - FFN neurons removed while fine-tuning, every score with the same fine-tuning budget:
//    magnitude, random, movement and GUM (with and without distillation);
//  - low-rank factorization: activation-aware SVD (training-free) against FLOP (fine-tuned);
//  - 25% of the blocks removed by Block Influence against the last blocks and random blocks;
//  - sublayers (attention only, MLP only, both) against whole blocks at equal parameter budgets,
//    with the KV cache each output needs per token;
//  - attention heads on an MHA model: KV groups removed alike in every block (magnitude, random,
//    activation) against KV heads merged per block (fitted to the calibration queries, or mean
//    pooled) and against whole attention sublayers, at 12.5% and 25% of the attention parameters.
// Each run is a separate `shears-worker run-local`; prints Markdown with the redundancy measures
// of the dense model and of each pruned one.
#include <algorithm>
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
  bool calibrated = true;  // with the calibration windows (and the redundancy measures on them)
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
  return out.empty() ? "-" : absl::StrJoin(out, " ");
}

// The FFN measures of `model` as table cells: max cosine, uniqueness, sensitivity, effective rank;
// "-" in each for a job that measured none (no calibration data).
std::string FfnCells(const nlohmann::json& result, const std::string& model) {
  if (Influences(result, model) == "-") return "- | - | - | -";
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

// The KV cache a token takes in 16 bits in the model whose config.json is `config`: K and V of
// each attention sublayer, KV heads × head_dim values each (the Nemotron-NAS layout's per block).
int64_t KvCacheBytesPerToken(const nlohmann::json& config) {
  const int64_t heads = config.value("num_attention_heads", 1);
  const int64_t head_dim =
      config.contains("head_dim") && config["head_dim"].is_number() ? config["head_dim"].get<int64_t>()
                                                                      : config.value("hidden_size", 0) / heads;
  int64_t kv_heads = 0;  // summed over the blocks
  if (config.contains("block_configs")) {
    for (const auto& block : config["block_configs"]) {
      if (!block["attention"].value("no_op", false)) kv_heads += heads / block["attention"]["n_heads_in_group"].get<int64_t>();
    }
  } else {
    const auto& kv = config.contains("num_key_value_heads") ? config["num_key_value_heads"] : nlohmann::json(heads);
    kv_heads = config.value("num_hidden_layers", 0) * (kv.is_number() ? kv.get<int64_t>() : heads);
  }
  return 2 * kv_heads * head_dim * 2;
}

// Each block's KV heads in a Nemotron-NAS config (0: no attention), "KV heads 8 4 8 …"; empty
// for other layouts.
std::string BlockKvHeads(const nlohmann::json& config) {
  if (!config.contains("block_configs")) return "";
  const int64_t heads = config.value("num_attention_heads", 1);
  std::vector<int64_t> kv;
  for (const auto& block : config["block_configs"]) {
    const auto& attention = block["attention"];
    kv.push_back(attention.value("no_op", false) ? 0 : heads / attention["n_heads_in_group"].get<int64_t>());
  }
  return absl::StrCat("KV heads ", absl::StrJoin(kv, " "));
}

// The blocks a result removed, then its sublayers: "3, 5" or "attention 2, mlp 7"; when heads
// went (the written config has other head counts than `dense`), the heads left.
std::string Removed(const nlohmann::json& result, const nlohmann::json& config, const nlohmann::json& dense) {
  const bool sublayers_removed = !result.value("removed_sublayers", nlohmann::json::array()).empty();
  if (!sublayers_removed && !BlockKvHeads(config).empty() && BlockKvHeads(dense).empty()) return BlockKvHeads(config);
  const auto count = [](const nlohmann::json& c, const char* key) {
    return c.contains(key) && c[key].is_number() ? c[key].get<int64_t>() : int64_t{-1};
  };
  if (!sublayers_removed && (count(config, "num_attention_heads") != count(dense, "num_attention_heads") ||
                             count(config, "num_key_value_heads") != count(dense, "num_key_value_heads"))) {
    return absl::StrCat(count(config, "num_attention_heads"), " heads, ", count(config, "num_key_value_heads"),
                        " KV heads");
  }
  std::vector<std::string> removed;
  for (const auto& b : result.value("removed_blocks", nlohmann::json::array())) removed.push_back(b.dump());
  std::vector<std::string> sublayers;
  for (const auto& r : result.value("removed_sublayers", nlohmann::json::array())) {
    sublayers.push_back(absl::StrCat(r.value("sublayer", "?"), " ", r.value("block", 0)));
  }
  std::string out = removed.empty() ? "-" : absl::StrJoin(removed, ", ");
  if (!sublayers.empty()) out = absl::StrCat("blocks ", out, "; ", absl::StrJoin(sublayers, ", "));
  return out;
}

int Table(const std::string& build, const std::string& work, const std::string& kjv, const std::string& model,
          const std::string& title, const std::vector<Job>& jobs) {
  std::cout << "\n" << title << " (`" << model << "`):\n\n"
            << "| job | perplexity | removed parameters | removed | Block Influence after | FFN max cosine "
               "| FFN uniqueness | FFN sensitivity | FFN effective rank | KV cache per token | seconds |\n"
            << "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|\n";
  const auto dense_config = nlohmann::json::parse(shears::ReadFile(model + "/config.json").value_or("{}"), nullptr, false);
  int failures = 0;
  std::string dense_line;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const std::string spec = absl::StrCat(work, "/job", i, ".json"), log = absl::StrCat(work, "/job", i, ".log");
    (void)shears::WriteFileAtomically(
        spec, absl::StrCat("{\"model_uri\": \"file://", model, "\", ", jobs[i].spec,
                           !jobs[i].calibrated ? ""
                                               : absl::StrCat(", \"calibration\": {\"dataset_uri\": \"file://", kjv,
                                                              "/train.txt\", \"num_samples\": 64, \"seq_len\": 128, "
                                                              "\"seed\": 0}, \"neuron_measures\": true"),
                           ", \"evaluation\": {\"dataset_uri\": \"file://", kjv,
                           "/test.txt\", \"seq_len\": 128}, \"output\": {\"uri\": \"file://", work, "/out", i, "\"}}"));
    shears::bench::Run run = shears::bench::RunWorker(build + "/worker/shears-worker", spec, work + "/scratch", log);
    nlohmann::json result = shears::bench::ReadResult(log);
    const auto config = nlohmann::json::parse(shears::ReadFile(absl::StrCat(work, "/out", i, "/config.json")).value_or("{}"),
                                              nullptr, false);
    std::filesystem::remove_all(absl::StrCat(work, "/out", i));
    if (run.status != 0 || !result.is_object() || !result.contains("evaluation")) {
      std::cerr << jobs[i].label << " failed; see " << log << "\n";
      ++failures;
      continue;
    }
    if (dense_line.empty()) {
      dense_line = absl::StrCat("| dense | ", Format("%.2f", result["evaluation"]["dense_perplexity"].get<double>()),
                                " | - | - | ", Influences(result, "dense"), " | ", FfnCells(result, "dense"), " | ",
                                KvCacheBytesPerToken(dense_config), " B | - |");
    }
    const double before = std::stod(result["model_parameters_before"].get<std::string>());
    const double after = std::stod(result["model_parameters_after"].get<std::string>());
    std::cout << "| " << jobs[i].label << " | " << Format("%.2f", result["evaluation"]["pruned_perplexity"].get<double>())
              << " | " << Format("%.1f%%", 100.0 * (before - after) / before) << " of the model | " << Removed(result, config, dense_config)
              << " | " << Influences(result, "pruned") << " | " << FfnCells(result, "pruned") << " | "
              << KvCacheBytesPerToken(config) << " B | " << Format("%.1f", run.seconds) << " |\n";
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
  if (argc < 6) {
    std::cerr << "usage: structured_table BUILD_DIR WORK_DIR FFN_MODEL_DIR DEEP_MODEL_DIR MHA_MODEL_DIR [TABLE ...]\n"
                 "tables: ffn tuned rank blocks sublayers heads (default: all)\n";
    return 2;
  }
  const std::vector<std::string> only(argv + 6, argv + argc);
  const auto wanted = [&](const std::string& table) {
    return only.empty() || std::find(only.begin(), only.end(), table) != only.end();
  };
  const std::string build = argv[1], work = argv[2];
  const std::string ffn_model = std::filesystem::absolute(argv[3]).string();
  const std::string deep_model = std::filesystem::absolute(argv[4]).string();
  const std::string mha_model = std::filesystem::absolute(argv[5]).string();
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
  int failures = 0;
  if (wanted("ffn")) failures += Table(build, work, kjv, ffn_model, "FFN neurons, one-shot (no fine-tuning)", one_shot);

  std::vector<Job> tuned = {{"dense, fine-tuned (no neuron removed)", FfnSpec("MAGNITUDE", "0", FineTune(kjv))}};
  for (const char* share : {"0.25", "0.5"}) {
    for (const char* method : {"MAGNITUDE", "RANDOM", "MOVEMENT", "GUM"}) {
      tuned.push_back({absl::StrCat(method, " ", share), FfnSpec(method, share, FineTune(kjv))});
    }
    for (const char* method : {"MAGNITUDE", "RANDOM", "MOVEMENT", "GUM"}) {
      tuned.push_back({absl::StrCat(method, " ", share, " + distillation"), FfnSpec(method, share, FineTune(kjv, true))});
    }
  }
  if (wanted("tuned")) {
    failures += Table(build, work, kjv, ffn_model, "FFN neurons pruned while fine-tuning, same budget for every score",
                      tuned);
  }

  std::vector<Job> rank;
  for (const char* share : {"0.3", "0.5"}) {
    const std::string common = absl::StrCat("\"method\": \"METHOD_LOW_RANK\", \"target_sparsity\": ", share);
    rank.push_back({absl::StrCat("activation-aware SVD ", share), common});
    rank.push_back({absl::StrCat("FLOP ", share),
                    absl::StrCat(common, ", \"low_rank\": {\"algorithm\": \"LOW_RANK_FLOP\"}, ", FineTune(kjv))});
  }
  if (wanted("rank")) {
    failures += Table(build, work, kjv, ffn_model,
                      "Low rank (target: share of the block linears' parameters; removed: share of the whole model's)",
                      rank);
  }

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
  if (wanted("blocks")) failures += Table(build, work, kjv, deep_model, "Blocks", layers);

  // Sublayers against blocks at the same share of the blocks' parameters (a quarter is two of the
  // eight blocks; an eighth one block).
  std::vector<Job> sublayers;
  for (const char* share : {"0.125", "0.25"}) {
    const std::string target = absl::StrCat("\"target_sparsity\": ", share);
    sublayers.push_back({absl::StrCat("blocks, BLOCK_INFLUENCE ", share),
                         absl::StrCat("\"method\": \"METHOD_BLOCK_INFLUENCE\", \"structure\": \"STRUCTURE_LAYERS\", ", target)});
    for (const char* kind : {"ALL", "ATTENTION", "MLP"}) {
      sublayers.push_back({absl::StrCat("sublayers ", kind, ", BLOCK_INFLUENCE ", share),
                           absl::StrCat("\"method\": \"METHOD_BLOCK_INFLUENCE\", \"structure\": \"STRUCTURE_SUBLAYERS\", "
                                        "\"sublayers\": \"SUBLAYERS_", kind, "\", ", target)});
    }
    sublayers.push_back({absl::StrCat("sublayers ALL, LAST_BLOCKS ", share),
                         absl::StrCat("\"method\": \"METHOD_LAST_BLOCKS\", \"structure\": \"STRUCTURE_SUBLAYERS\", ", target)});
    sublayers.push_back({absl::StrCat("sublayers ALL, RANDOM ", share, " (seed 0)"),
                         absl::StrCat("\"method\": \"METHOD_RANDOM\", \"structure\": \"STRUCTURE_SUBLAYERS\", ", target)});
  }
  if (wanted("sublayers")) {
    failures += Table(build, work, kjv, deep_model,
                      "Sublayers against blocks (target: share of the blocks' parameters; removed: share of the model's)",
                      sublayers);
  }

  // Heads on the MHA model (8 blocks of 8 query and 8 KV heads; attention is a third of a block's
  // parameters): an eighth of the attention parameters is one KV group of each block, or K/V
  // merged where it costs least (four blocks' 8 KV heads halved, say), or one of the 8 attention
  // sublayers (4.07% of the blocks' parameters); a quarter twice that.
  std::vector<Job> heads;
  for (const auto& [share, sublayer_share] : {std::pair<const char*, const char*>{"0.125", "0.0407"}, {"0.25", "0.0814"}}) {
    const std::string target = absl::StrCat("\"structure\": \"STRUCTURE_ATTENTION_HEADS\", \"target_sparsity\": ", share);
    for (const char* method : {"MAGNITUDE", "RANDOM", "ACTIVATION"}) {
      heads.push_back({absl::StrCat("KV groups, ", method, " ", share, " UNIFORM"),
                       absl::StrCat("\"method\": \"METHOD_", method, "\", ", target)});
    }
    for (const char* method : {"ACTIVATION", "MAGNITUDE", "RANDOM"}) {
      heads.push_back({absl::StrCat("KV heads merged (fitted), ", method, " ", share, " GLOBAL"),
                       absl::StrCat("\"method\": \"METHOD_", method, "\", \"allocation\": \"ALLOCATION_GLOBAL\", ", target)});
    }
    heads.push_back({absl::StrCat("KV heads merged (mean-pooled), MAGNITUDE ", share, " GLOBAL"),
                     absl::StrCat("\"method\": \"METHOD_MAGNITUDE\", \"allocation\": \"ALLOCATION_GLOBAL\", ", target),
                     false});
    heads.push_back({absl::StrCat("attention sublayers, BLOCK_INFLUENCE (", share, " of attention)"),
                     absl::StrCat("\"method\": \"METHOD_BLOCK_INFLUENCE\", \"structure\": \"STRUCTURE_SUBLAYERS\", "
                                  "\"sublayers\": \"SUBLAYERS_ATTENTION\", \"target_sparsity\": ", sublayer_share)});
  }
  if (wanted("heads")) {
    failures += Table(build, work, kjv, mha_model,
                      "Attention heads (target: share of the attention parameters; removed: share of the model's)", heads);
  }
  std::filesystem::remove_all(work);
  return failures == 0 ? 0 : 1;
}
