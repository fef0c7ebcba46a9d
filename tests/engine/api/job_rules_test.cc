// The job rules on the engine's own options: the table of methods and structures, the data each
// method needs, and errors that name the field. Torch-free, like the rules.
#include "worker/engine/api/job_rules.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace shears::engine {
namespace {

// A job every rule accepts: Wanda at 50% with calibration data.
PruneOptions Valid() {
  PruneOptions o;
  o.method = Method::kWanda;
  o.target_sparsity = 0.5;
  o.calibration = CalibrationOptions{"file:///data/train.txt", 8, 64, 0};
  return o;
}

FineTuneOptions FineTune() { return FineTuneOptions{"file:///data/train.txt", 10, 1e-4, 4, 64, false, -1.0}; }

TEST(JobRules, EveryMethodsFirstStructureIsItsDefault) {
  EXPECT_EQ(SupportedStructures(Method::kMagnitude).front(), Structure::kUnstructured);
  EXPECT_EQ(SupportedStructures(Method::kMovement), std::vector<Structure>{Structure::kFfnNeurons});
  EXPECT_EQ(SupportedStructures(Method::kGum), std::vector<Structure>{Structure::kFfnNeurons});
  EXPECT_EQ(SupportedStructures(Method::kLowRank), std::vector<Structure>{Structure::kRank});
  EXPECT_EQ(SupportedStructures(Method::kBlockInfluence), (std::vector<Structure>{Structure::kLayers, Structure::kSublayers}));
  EXPECT_EQ(SupportedStructures(Method::kActivation), std::vector<Structure>{Structure::kAttentionHeads});
  EXPECT_EQ(SupportedStructures(Method::kLastBlocks), (std::vector<Structure>{Structure::kLayers, Structure::kSublayers}));
  EXPECT_EQ(SupportedStructures(Method::kPredictorSearch),
            (std::vector<Structure>{Structure::kUnstructured, Structure::kFfnNeurons}));
  EXPECT_EQ(SupportedStructures(Method::kRandom),
            (std::vector<Structure>{Structure::kUnstructured, Structure::kNM, Structure::kLayers,
                                    Structure::kFfnNeurons, Structure::kSublayers, Structure::kAttentionHeads}));
}

TEST(JobRules, WhatEachMethodNeeds) {
  for (Method m : {Method::kWanda, Method::kSparseGpt, Method::kSparseLlm, Method::kBlockInfluence,
                   Method::kPredictorSearch}) {
    EXPECT_TRUE(NeedsCalibration(m, LowRankAlgorithm::kSvd)) << MethodName(m);
    EXPECT_FALSE(NeedsFineTuning(m, LowRankAlgorithm::kSvd)) << MethodName(m);
  }
  EXPECT_TRUE(NeedsCalibration(Method::kLowRank, LowRankAlgorithm::kSvd));
  EXPECT_FALSE(NeedsCalibration(Method::kLowRank, LowRankAlgorithm::kFlop));
  EXPECT_TRUE(NeedsFineTuning(Method::kLowRank, LowRankAlgorithm::kFlop));
  for (Method m : {Method::kMovement, Method::kGum}) EXPECT_TRUE(NeedsFineTuning(m, LowRankAlgorithm::kSvd));
  for (Method m : {Method::kMagnitude, Method::kRandom, Method::kLastBlocks}) {
    EXPECT_FALSE(NeedsCalibration(m, LowRankAlgorithm::kSvd)) << MethodName(m);
    EXPECT_FALSE(NeedsFineTuning(m, LowRankAlgorithm::kSvd)) << MethodName(m);
  }
  // Magnitude and random FFN pruning may fine-tune too, to compare at movement's budget.
  EXPECT_TRUE(TakesFineTuning(Method::kMagnitude, Structure::kFfnNeurons, LowRankAlgorithm::kSvd));
  EXPECT_FALSE(TakesFineTuning(Method::kMagnitude, Structure::kUnstructured, LowRankAlgorithm::kSvd));
  // The search prunes its FFN configurations one-shot: fine-tuning would ignore the shares it chose.
  EXPECT_FALSE(TakesFineTuning(Method::kPredictorSearch, Structure::kFfnNeurons, LowRankAlgorithm::kSvd));
  EXPECT_TRUE(RemovesStructures(Structure::kLayers));
  EXPECT_TRUE(RemovesStructures(Structure::kFfnNeurons));
  EXPECT_TRUE(RemovesStructures(Structure::kRank));
  EXPECT_TRUE(RemovesStructures(Structure::kSublayers));
  EXPECT_FALSE(RemovesStructures(Structure::kUnstructured));
  EXPECT_FALSE(RemovesStructures(Structure::kNM));
}

TEST(JobRules, NamesAreThePublicApis) {
  EXPECT_EQ(MethodName(Method::kSparseGpt), "METHOD_SPARSEGPT");
  EXPECT_EQ(MethodName(Method::kPredictorSearch), "METHOD_PREDICTOR_SEARCH");
  EXPECT_EQ(StructureName(Structure::kNM), "STRUCTURE_N_M");
  EXPECT_EQ(StructureName(Structure::kFfnNeurons), "STRUCTURE_FFN_NEURONS");
  EXPECT_EQ(StructureName(Structure::kSublayers), "STRUCTURE_SUBLAYERS");
}

TEST(JobRules, AValidJobPasses) {
  EXPECT_TRUE(CheckJobRules(Valid()).ok()) << CheckJobRules(Valid());
  PruneOptions gum;
  gum.method = Method::kGum;
  gum.structure = Structure::kFfnNeurons;
  gum.target_sparsity = 0.25;
  gum.fine_tune = FineTune();
  gum.fine_tune->uniqueness_weight = 0.5;
  EXPECT_TRUE(CheckJobRules(gum).ok()) << CheckJobRules(gum);
  PruneOptions nm = Valid();
  nm.structure = Structure::kNM;
  nm.target_sparsity = 0.0;
  nm.n = 2, nm.m = 4;
  nm.format = OutputFormat::kSparse24Bitmask;
  EXPECT_TRUE(CheckJobRules(nm).ok()) << CheckJobRules(nm);
  PruneOptions sublayers = Valid();
  sublayers.method = Method::kBlockInfluence;
  sublayers.structure = Structure::kSublayers;
  EXPECT_TRUE(CheckJobRules(sublayers).ok()) << CheckJobRules(sublayers);
  PruneOptions aligned = gum;
  aligned.width_multiple = 256;
  EXPECT_TRUE(CheckJobRules(aligned).ok()) << CheckJobRules(aligned);
  for (Method method : {Method::kMagnitude, Method::kWanda, Method::kSparseGpt}) {
    PruneOptions owl = Valid();
    owl.method = method;
    owl.allocation = Allocation::kOwl;
    owl.owl = {7.0, 0.1};
    EXPECT_TRUE(CheckJobRules(owl).ok()) << CheckJobRules(owl);
  }
  PruneOptions seeded = Valid();
  seeded.method = Method::kPredictorSearch;
  seeded.search.base_method = Method::kWanda;
  seeded.owl.max_deviation = 0.05;
  EXPECT_TRUE(CheckJobRules(seeded).ok()) << CheckJobRules(seeded);
  for (Method method : {Method::kMagnitude, Method::kRandom, Method::kActivation}) {
    for (Allocation allocation : {Allocation::kUniform, Allocation::kGlobal}) {
      PruneOptions heads = Valid();
      heads.method = method;
      heads.structure = Structure::kAttentionHeads;
      heads.allocation = allocation;
      heads.width_multiple = allocation == Allocation::kUniform ? 2 : 0;
      EXPECT_TRUE(CheckJobRules(heads).ok()) << CheckJobRules(heads);
    }
  }
}

TEST(JobRules, EachBrokenRuleNamesItsField) {
  struct Case {
    std::function<void(PruneOptions&)> edit;
    std::string message;  // the whole message, or its start
  };
  const std::vector<Case> cases = {
      // The bug of issue 14: the method was made before the structure was checked.
      {[](PruneOptions& o) { o.method = Method::kMovement, o.fine_tune = FineTune(); },
       "structure: STRUCTURE_UNSTRUCTURED is not supported with METHOD_MOVEMENT (it prunes STRUCTURE_FFN_NEURONS)"},
      {[](PruneOptions& o) { o.structure = Structure::kLayers; },
       "structure: STRUCTURE_LAYERS is not supported with METHOD_WANDA"},
      {[](PruneOptions& o) { o.target_sparsity = 1.0; }, "target_sparsity: must be in [0, 1), got 1"},
      {[](PruneOptions& o) { o.structure = Structure::kNM; },
       "n_m: is required with STRUCTURE_N_M (e.g. n: 2, m: 4)"},
      {[](PruneOptions& o) { o.n = 2, o.m = 4; }, "n_m: applies to STRUCTURE_N_M only"},
      {[](PruneOptions& o) { o.structure = Structure::kNM, o.target_sparsity = 0, o.n = 4, o.m = 4; },
       "n_m.n: is out of range (n_m: N must be in [1, M), got 4:4)"},
      {[](PruneOptions& o) { o.structure = Structure::kNM, o.target_sparsity = 0, o.n = 1, o.m = 512; },
       "n_m.m: must be in [2, 256], got 512"},
      {[](PruneOptions& o) { o.structure = Structure::kNM, o.target_sparsity = 0.7, o.n = 2, o.m = 4; },
       "target_sparsity: is 0.7 but n_m 2:4 removes 0.5"},
      {[](PruneOptions& o) { o.calibration.reset(); }, "calibration: is required by METHOD_WANDA"},
      {[](PruneOptions& o) { o.method = Method::kMagnitude, o.calibration.reset(), o.neuron_measures = true; },
       "neuron_measures: needs calibration data: the neurons are measured on its windows"},
      {[](PruneOptions& o) { o.calibration->path.clear(); }, "calibration.dataset_uri: is required"},
      {[](PruneOptions& o) { o.calibration->num_samples = 0; }, "calibration.num_samples: must be in [1, 65536], got 0"},
      {[](PruneOptions& o) { o.calibration->num_samples = 1000000; },
       "calibration.num_samples: must be in [1, 65536], got 1000000"},
      {[](PruneOptions& o) { o.calibration->seq_len = 1; }, "calibration.seq_len: must be in [2, 32768], got 1"},
      // A window of 100000 tokens would take each block pass days: refused before anything runs.
      {[](PruneOptions& o) { o.calibration->seq_len = 100000; },
       "calibration.seq_len: must be in [2, 32768], got 100000"},
      {[](PruneOptions& o) { o.sparsellm.iterations = 3; }, "sparsellm: applies to METHOD_SPARSELLM only"},
      {[](PruneOptions& o) { o.method = Method::kSparseLlm, o.sparsellm.gamma = -1; },
       "sparsellm.gamma: must be a non-negative number, got -1"},
      {[](PruneOptions& o) { o.method = Method::kMovement, o.structure = Structure::kFfnNeurons; },
       "fine_tune: is required by METHOD_MOVEMENT, which fine-tunes while it prunes (fine_tune.dataset_uri"},
      {[](PruneOptions& o) { o.fine_tune = FineTune(); },
       "fine_tune: does not apply to METHOD_WANDA with STRUCTURE_UNSTRUCTURED"},
      {[](PruneOptions& o) {
         o.method = Method::kMovement, o.structure = Structure::kFfnNeurons, o.fine_tune = FineTune();
         o.fine_tune->uniqueness_weight = 1.0;
       },
       "fine_tune.uniqueness_weight: applies to METHOD_GUM only"},
      {[](PruneOptions& o) {
         o.method = Method::kGum, o.structure = Structure::kFfnNeurons, o.fine_tune = FineTune();
         o.fine_tune->steps = -1;
       },
       "fine_tune.steps: must be in [0, 1000000], got -1"},
      {[](PruneOptions& o) {
         o.method = Method::kGum, o.structure = Structure::kFfnNeurons, o.fine_tune = FineTune();
         o.fine_tune->batch_size = 100000;
       },
       "fine_tune.batch_size: must be in [0, 4096] (0: the default), got 100000"},
      {[](PruneOptions& o) {
         o.method = Method::kGum, o.structure = Structure::kFfnNeurons, o.fine_tune = FineTune();
         o.allocation = Allocation::kUniform;
       },
       "allocation: METHOD_GUM selects neurons globally across blocks (ALLOCATION_GLOBAL)"},
      {[](PruneOptions& o) { o.search.base_method = Method::kWanda; },
       "search: applies to METHOD_PREDICTOR_SEARCH only"},
      {[](PruneOptions& o) { o.method = Method::kPredictorSearch; },
       "search.base_method: is required: METHOD_MAGNITUDE, METHOD_WANDA or METHOD_SPARSEGPT"},
      {[](PruneOptions& o) { o.method = Method::kPredictorSearch, o.search.base_method = Method::kSparseLlm; },
       "search.base_method: METHOD_SPARSELLM cannot take a sparsity per layer"},
      {[](PruneOptions& o) {
         o.method = Method::kPredictorSearch, o.structure = Structure::kFfnNeurons;
         o.search.base_method = Method::kWanda;
       },
       "search.base_method: searching FFN neuron shares, neurons are scored by METHOD_MAGNITUDE"},
      {[](PruneOptions& o) {
         o.method = Method::kPredictorSearch, o.structure = Structure::kFfnNeurons;
         o.search.base_method = Method::kMagnitude, o.allocation = Allocation::kGlobal;
       },
       "allocation: the search chooses each block's share of neurons itself"},
      {[](PruneOptions& o) {
         o.method = Method::kPredictorSearch, o.search.base_method = Method::kWanda;
         o.search.measured_configurations = 6;
       },
       "search.measured_configurations: must be in [10, 10000]"},
      {[](PruneOptions& o) {
         o.method = Method::kPredictorSearch, o.search.base_method = Method::kWanda, o.search.search_budget = 10;
       },
       "search.search_budget: must be in [50, 1000000], got 10"},
      {[](PruneOptions& o) {
         o.method = Method::kPredictorSearch, o.search.base_method = Method::kWanda, o.search.max_deviation = 0.6;
       },
       "search.max_deviation: must be in [0, 0.5], got 0.6"},
      {[](PruneOptions& o) { o.low_rank.dense_output = true; }, "low_rank: applies to METHOD_LOW_RANK only"},
      {[](PruneOptions& o) { o.evaluation = EvaluationOptions{"file:///data/test.txt", 1, 0}; },
       "evaluation.seq_len: must be in [2, 32768], got 1"},
      {[](PruneOptions& o) { o.evaluation = EvaluationOptions{"file:///data/test.txt", 32769, 0}; },
       "evaluation.seq_len: must be in [2, 32768], got 32769"},
      {[](PruneOptions& o) { o.evaluation = EvaluationOptions{"file:///data/test.txt", 64, -1}; },
       "evaluation.max_tokens: must not be negative"},
      {[](PruneOptions& o) {
         o.method = Method::kLastBlocks, o.structure = Structure::kLayers, o.format = OutputFormat::kSparseBitmask;
       },
       "output.format: a model with structures removed is written as OUTPUT_FORMAT_DENSE_SAFETENSORS"},
      {[](PruneOptions& o) { o.format = OutputFormat::kSparse24Bitmask; },
       "output.format: the sparse-24-bitmask format needs 2:4 sparsity"},
      {[](PruneOptions& o) { o.allocation = Allocation::kGlobal; },
       "allocation: ALLOCATION_UNIFORM and ALLOCATION_GLOBAL apply to STRUCTURE_FFN_NEURONS and "
       "STRUCTURE_ATTENTION_HEADS (ALLOCATION_OWL to STRUCTURE_UNSTRUCTURED)"},
      {[](PruneOptions& o) { o.allocation = Allocation::kOwl, o.structure = Structure::kNM, o.n = 2, o.m = 4; },
       "allocation: ALLOCATION_OWL varies unstructured sparsity per block (STRUCTURE_UNSTRUCTURED)"},
      {[](PruneOptions& o) { o.allocation = Allocation::kOwl, o.method = Method::kSparseLlm; },
       "allocation: ALLOCATION_OWL applies to METHOD_MAGNITUDE, METHOD_WANDA and METHOD_SPARSEGPT, not "
       "METHOD_SPARSELLM"},
      {[](PruneOptions& o) { o.allocation = Allocation::kOwl, o.method = Method::kMagnitude, o.calibration.reset(); },
       "calibration: is required by ALLOCATION_OWL, which counts outliers in the activations"},
      {[](PruneOptions& o) { o.allocation = Allocation::kOwl, o.target_sparsity = 0; },
       "target_sparsity: ALLOCATION_OWL needs a target above 0"},
      {[](PruneOptions& o) { o.owl.outlier_multiple = 7; },
       "owl: applies to ALLOCATION_OWL and METHOD_PREDICTOR_SEARCH (its OWL seed) only"},
      {[](PruneOptions& o) { o.allocation = Allocation::kOwl, o.owl.outlier_multiple = 0.5; },
       "owl.outlier_multiple: must be in [1, 1000] (0: the default), got 0.5"},
      {[](PruneOptions& o) { o.allocation = Allocation::kOwl, o.owl.max_deviation = -0.1; },
       "owl.max_deviation: must be in (0, 0.5] (0: the default), got -0.1"},
      {[](PruneOptions& o) { o.method = Method::kActivation, o.calibration.reset(); },
       "structure: STRUCTURE_UNSTRUCTURED is not supported with METHOD_ACTIVATION (it prunes STRUCTURE_ATTENTION_HEADS)"},
      {[](PruneOptions& o) { o.method = Method::kActivation, o.structure = Structure::kAttentionHeads, o.calibration.reset(); },
       "calibration: is required by METHOD_ACTIVATION"},
      {[](PruneOptions& o) { o.structure = Structure::kAttentionHeads; },
       "structure: STRUCTURE_ATTENTION_HEADS is not supported with METHOD_WANDA"},
      {[](PruneOptions& o) {
         o.method = Method::kMagnitude, o.structure = Structure::kAttentionHeads, o.fine_tune = FineTune();
       },
       "fine_tune: does not apply to METHOD_MAGNITUDE with STRUCTURE_ATTENTION_HEADS"},
      {[](PruneOptions& o) {
         o.method = Method::kMagnitude, o.structure = Structure::kAttentionHeads, o.allocation = Allocation::kGlobal;
         o.width_multiple = 2;
       },
       "width_multiple: applies to STRUCTURE_FFN_NEURONS and to STRUCTURE_ATTENTION_HEADS with ALLOCATION_UNIFORM only"},
      {[](PruneOptions& o) { o.structure = Structure::kSublayers; },
       "structure: STRUCTURE_SUBLAYERS is not supported with METHOD_WANDA"},
      {[](PruneOptions& o) { o.method = Method::kBlockInfluence, o.structure = Structure::kSublayers, o.calibration.reset(); },
       "calibration: is required by METHOD_BLOCK_INFLUENCE"},
      {[](PruneOptions& o) {
         o.method = Method::kLastBlocks, o.structure = Structure::kSublayers, o.format = OutputFormat::kSparseBitmask;
       },
       "output.format: a model with structures removed is written as OUTPUT_FORMAT_DENSE_SAFETENSORS"},
      {[](PruneOptions& o) { o.width_multiple = 64; }, "width_multiple: applies to STRUCTURE_FFN_NEURONS and to"},
      {[](PruneOptions& o) { o.sublayers = Sublayers::kAttention; }, "sublayers: applies to STRUCTURE_SUBLAYERS only"},
      {[](PruneOptions& o) { o.method = Method::kMagnitude, o.structure = Structure::kFfnNeurons, o.width_multiple = -8; },
       "width_multiple: must be in [0, 65536], got -8"},
      {[](PruneOptions& o) {
         o.method = Method::kMagnitude, o.structure = Structure::kFfnNeurons, o.width_multiple = 1 << 20;
       },
       "width_multiple: must be in [0, 65536], got 1048576"},
      {[](PruneOptions& o) {
         o.method = Method::kPredictorSearch, o.structure = Structure::kFfnNeurons;
         o.search.base_method = Method::kMagnitude, o.width_multiple = 64;
       },
       "width_multiple: the predictor search does not align the widths it searches yet"},
  };
  for (const auto& c : cases) {
    PruneOptions options = Valid();
    c.edit(options);
    const absl::Status st = CheckJobRules(options);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_EQ(st.message().substr(0, c.message.size()), c.message);
  }
}

}  // namespace
}  // namespace shears::engine
