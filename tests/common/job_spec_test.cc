// A JobSpec as the server and `run-local` check it: translated into the engine's options with the
// public names intact, the method's default structure filled in, and errors that name the field.
#include "common/job_spec.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"

#include "common/job_translation.h"
#include "common/limits.h"
#include "common/uri.h"
#include "common/uri_policy.h"
#include "worker/engine/api/job_rules.h"

namespace shears {
namespace {

v1::JobSpec Valid() {
  v1::JobSpec spec;
  spec.set_model_uri("file:///models/tiny");
  spec.set_method(v1::METHOD_MAGNITUDE);
  spec.set_target_sparsity(0.5);
  spec.mutable_output()->set_uri("file:///out/tiny");
  ApplySpecDefaults(spec);
  return spec;
}

TEST(JobTranslation, EveryPublicMethodAndStructureKeepsItsName) {
  for (int i = v1::Method_MIN; i <= v1::Method_MAX; ++i) {
    const auto method = static_cast<v1::Method>(i);
    if (!v1::Method_IsValid(i) || method == v1::METHOD_UNSPECIFIED) continue;
    auto engine_method = EngineMethod(method, "spec.method");
    ASSERT_TRUE(engine_method.ok()) << v1::Method_Name(method);
    EXPECT_EQ(engine::MethodName(*engine_method), v1::Method_Name(method));
    EXPECT_EQ(ToProto(*engine_method), method);
  }
  for (int i = v1::Structure_MIN; i <= v1::Structure_MAX; ++i) {
    const auto structure = static_cast<v1::Structure>(i);
    if (!v1::Structure_IsValid(i) || structure == v1::STRUCTURE_UNSPECIFIED) continue;
    v1::JobSpec spec = Valid();
    spec.set_structure(structure);
    auto options = EngineOptions(spec);
    ASSERT_TRUE(options.ok()) << options.status();
    EXPECT_EQ(engine::StructureName(options->structure), v1::Structure_Name(structure));
    EXPECT_EQ(ToProto(options->structure), structure);
  }
}

TEST(JobTranslation, DatasetsKeepTheirUrisAndUnsetFieldsStayUnset) {
  v1::JobSpec spec = Valid();
  spec.mutable_calibration()->set_dataset_uri("s3://bucket/train.txt");
  spec.mutable_calibration()->set_num_samples(8);
  spec.mutable_calibration()->set_seq_len(64);
  auto options = EngineOptions(spec).value();
  ASSERT_TRUE(options.calibration.has_value());
  EXPECT_EQ(options.calibration->path, "s3://bucket/train.txt");
  EXPECT_FALSE(options.evaluation.has_value());
  EXPECT_FALSE(options.fine_tune.has_value());
  EXPECT_FALSE(options.allocation.has_value());
  EXPECT_FALSE(options.search.base_method.has_value());
  spec.set_allocation(v1::ALLOCATION_GLOBAL);
  EXPECT_EQ(EngineOptions(spec)->allocation, engine::Allocation::kGlobal);
  spec.set_allocation(static_cast<v1::Allocation>(9));
  EXPECT_EQ(EngineOptions(spec).status().message(), "spec.allocation: unknown allocation 9");
}

TEST(JobTranslation, SublayerAndAlignmentOptionsAndTheirResultsCarryOver) {
  v1::JobSpec spec = Valid();
  EXPECT_FALSE(EngineOptions(spec)->sublayers.has_value());
  EXPECT_EQ(EngineOptions(spec)->width_multiple, 0);
  spec.set_sublayers(v1::SUBLAYERS_ATTENTION);
  spec.set_width_multiple(256);
  auto options = EngineOptions(spec).value();
  EXPECT_EQ(options.sublayers, engine::Sublayers::kAttention);
  EXPECT_EQ(options.width_multiple, 256);
  spec.set_sublayers(static_cast<v1::Sublayers>(7));
  EXPECT_EQ(EngineOptions(spec).status().message(), "spec.sublayers: unknown value 7");

  engine::PruneReport report;
  report.removed_sublayers = {{3, "attention", 0.01, 4128}, {5, "mlp", std::nullopt, 6176}};
  engine::BlockRedundancy block{0, 0.2};
  block.attention_influence = 0.05;
  report.redundancy.push_back({"dense", {block, {1, 0.3}}, {}});
  const v1::JobResult result = ResultOf(report, spec);
  ASSERT_EQ(result.removed_sublayers_size(), 2);
  EXPECT_EQ(result.removed_sublayers(0).block(), 3);
  EXPECT_EQ(result.removed_sublayers(0).sublayer(), "attention");
  EXPECT_DOUBLE_EQ(result.removed_sublayers(0).influence(), 0.01);
  EXPECT_EQ(result.removed_sublayers(0).parameters(), 4128);
  EXPECT_FALSE(result.removed_sublayers(1).has_influence()) << "measured only with calibration data";
  EXPECT_DOUBLE_EQ(result.redundancy(0).blocks(0).attention_influence(), 0.05);
  EXPECT_FALSE(result.redundancy(0).blocks(0).has_mlp_influence());
  EXPECT_FALSE(result.redundancy(0).blocks(1).has_attention_influence());
}

TEST(JobTranslation, OwlsOptionsAndItsAllocationCarryOver) {
  v1::JobSpec spec = Valid();
  spec.set_allocation(v1::ALLOCATION_OWL);
  spec.mutable_owl()->set_outlier_multiple(7);
  spec.mutable_owl()->set_max_deviation(0.1);
  auto options = EngineOptions(spec).value();
  EXPECT_EQ(options.allocation, engine::Allocation::kOwl);
  EXPECT_EQ(options.owl.outlier_multiple, 7.0);
  EXPECT_EQ(options.owl.max_deviation, 0.1);
  EXPECT_EQ(EngineOptions(Valid())->owl.outlier_multiple, 0.0) << "unset: the engine's default";

  engine::PruneReport report;
  report.owl = engine::OwlReport{5.0, 0.08, {{0, 0.021, 0.66}, {1, 0.012, 0.74}}};
  const v1::JobResult result = ResultOf(report, spec);
  ASSERT_TRUE(result.has_owl());
  EXPECT_EQ(result.owl().outlier_multiple(), 5.0);
  EXPECT_EQ(result.owl().max_deviation(), 0.08);
  ASSERT_EQ(result.owl().blocks_size(), 2);
  EXPECT_EQ(result.owl().blocks(1).block(), 1);
  EXPECT_DOUBLE_EQ(result.owl().blocks(1).outlier_ratio(), 0.012);
  EXPECT_DOUBLE_EQ(result.owl().blocks(1).sparsity(), 0.74);
  EXPECT_FALSE(ResultOf(engine::PruneReport{}, spec).has_owl());
}

TEST(JobSpec, EachMethodGetsItsFirstStructure) {
  for (auto [method, structure] : {std::pair{v1::METHOD_MAGNITUDE, v1::STRUCTURE_UNSTRUCTURED},
                                   {v1::METHOD_GUM, v1::STRUCTURE_FFN_NEURONS},
                                   {v1::METHOD_LOW_RANK, v1::STRUCTURE_RANK},
                                   {v1::METHOD_LAST_BLOCKS, v1::STRUCTURE_LAYERS}}) {
    v1::JobSpec spec;
    spec.set_method(method);
    ApplySpecDefaults(spec);
    EXPECT_EQ(spec.structure(), structure) << v1::Method_Name(method);
    EXPECT_EQ(spec.output().format(), v1::OUTPUT_FORMAT_DENSE_SAFETENSORS);
  }
}

TEST(JobSpec, TheEnginesRulesComeBackNamingTheSpecField) {
  EXPECT_TRUE(ValidateSpec(Valid()).ok()) << ValidateSpec(Valid());
  v1::JobSpec spec = Valid();
  spec.set_method(v1::METHOD_MOVEMENT);
  spec.set_structure(v1::STRUCTURE_UNSTRUCTURED);
  const absl::Status st = ValidateSpec(spec);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  const auto options = EngineOptions(spec).value();
  EXPECT_EQ(st.message(), "spec." + std::string(engine::CheckJobRules(options).message()));
  EXPECT_EQ(st.message().rfind("spec.structure: STRUCTURE_UNSTRUCTURED is not supported with METHOD_MOVEMENT", 0), 0u)
      << st;
}

TEST(JobSpec, FieldsOnlyTheProtoHasAreCheckedHere) {
  v1::JobSpec spec = Valid();
  spec.mutable_evaluation()->set_dataset_uri("file:///data/test.txt");
  spec.mutable_evaluation()->set_seq_len(64);
  spec.mutable_evaluation()->set_num_samples(4);
  EXPECT_EQ(ValidateSpec(spec).message(),
            "spec.evaluation.num_samples: evaluation uses every window; cap it with max_tokens");
  spec = Valid();
  spec.set_method(v1::METHOD_GUM);
  spec.set_structure(v1::STRUCTURE_FFN_NEURONS);
  spec.mutable_fine_tune()->set_dataset_uri("file:///data/train.txt");
  spec.mutable_fine_tune()->set_uniqueness_weight(-1);
  EXPECT_EQ(ValidateSpec(spec).message(), "spec.fine_tune.uniqueness_weight: must be a non-negative number");
  spec.mutable_fine_tune()->set_uniqueness_weight(0.5);
  EXPECT_TRUE(ValidateSpec(spec).ok()) << ValidateSpec(spec);
  spec = Valid();
  (*spec.mutable_labels())[std::string(64, 'k')] = "v";
  EXPECT_EQ(ValidateSpec(spec).message().rfind("spec.labels: ", 0), 0u);
  // The output may not overlap an input however it is spelled (issue 18: `<model>/.` rewrote the
  // input model).
  for (const char* output : {"file:///models/tiny/", "file:///models/tiny/.", "file:///models/./tiny",
                             "file:///models/tiny/out", "file:///models", "/models/x/../tiny", "file:////models//tiny"}) {
    spec = Valid();
    spec.mutable_output()->set_uri(output);
    EXPECT_EQ(ValidateSpec(spec).message(),
              "spec.output.uri: overlaps model_uri (file:///models/tiny): the job would overwrite what it reads")
        << output;
  }
  spec = Valid();
  spec.mutable_output()->set_uri("file:///models/tiny-pruned");
  EXPECT_TRUE(ValidateSpec(spec).ok()) << "a sibling whose name starts alike is no overlap";
  spec.mutable_calibration()->set_dataset_uri("file:///models/tiny-pruned/calib.txt");
  spec.mutable_calibration()->set_num_samples(8);
  spec.mutable_calibration()->set_seq_len(16);
  EXPECT_EQ(ValidateSpec(spec).message(),
            "spec.output.uri: overlaps calibration.dataset_uri (file:///models/tiny-pruned/calib.txt): the job would "
            "overwrite what it reads");
}

// The limits of common/limits.h, each named in its error.
TEST(JobSpec, SizesAreBoundedAndTheErrorNamesTheLimit) {
  v1::JobSpec spec = Valid();
  for (int i = 0; i < kMaxLabels; ++i) (*spec.mutable_labels())["k" + std::to_string(i)] = "v";
  EXPECT_TRUE(ValidateSpec(spec).ok());
  (*spec.mutable_labels())["one-more"] = "v";
  EXPECT_EQ(ValidateSpec(spec).message(), "spec.labels: 65 labels, more than the limit of 64");

  spec = Valid();
  (*spec.mutable_labels())["team"] = std::string(kMaxLabelValueBytes, 'v');
  EXPECT_TRUE(ValidateSpec(spec).ok());
  (*spec.mutable_labels())["team"] = std::string(3'900'000, 'v');  // the issue's 3.9 MB label
  const absl::Status big_label = ValidateSpec(spec);
  EXPECT_EQ(big_label.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(big_label.message(), absl::StrCat("spec: ", spec.ByteSizeLong(), " bytes, more than the limit of 65536"))
      << "the whole spec first";
  (*spec.mutable_labels())["team"] = std::string(kMaxLabelValueBytes + 1, 'v');
  EXPECT_EQ(ValidateSpec(spec).message(), "spec.labels[team]: 257 bytes, more than the limit of 256");

  spec = Valid();
  spec.set_model_uri("file:///models/" + std::string(kMaxUriBytes, 'm'));
  EXPECT_EQ(ValidateSpec(spec).message(), "spec.model_uri: 4111 bytes, more than the limit of 4096");
}

TEST(Uris, CanonicalFormsAndOverlaps) {
  EXPECT_EQ(CanonicalUri("/m/./a/../b//"), "file:///m/b");
  EXPECT_EQ(CanonicalUri("file:///../m"), "file:///m");
  EXPECT_EQ(CanonicalUri("s3://bucket//models/./m/"), "s3://bucket/models/m");
  EXPECT_TRUE(UrisOverlap("s3://b/out", "s3://b/out/model.safetensors"));
  EXPECT_FALSE(UrisOverlap("s3://b/out", "s3://b/out2"));
  EXPECT_FALSE(UrisOverlap("s3://b/out", "file:///b/out"));
  EXPECT_TRUE(UrisOverlap("file:///", "file:///anything"));
}


TEST(UriPolicy, PrefixesByWholeComponentsADefaultTenantAndClearErrors) {
  auto policy = UriPolicy::Parse(R"({"tenants": {
      "team-a": {"allow": ["file:///data/team-a/", "s3://models/team-a", "hf://meta-llama", "https://data.example.com"],
                 "private_networks": true},
      "*": {"allow": ["hf://"]}}})");
  ASSERT_TRUE(policy.ok()) << policy.status();
  const TenantUriPolicy a = policy->For("team-a").value();
  EXPECT_TRUE(a.private_networks);
  for (const char* uri : {"file:///data/team-a/m", "/data/team-a/x/../y", "s3://models/team-a", "s3://models/team-a/m/",
                          "hf://meta-llama/Llama-2-7b@main", "https://data.example.com/c4.txt"}) {
    EXPECT_TRUE(a.Allows(uri)) << uri;
  }
  for (const char* uri : {"file:///data/team-a-2/m", "/data/team-a/../team-b/m", "s3://models/team-a2", "s3://models",
                          "hf://meta-llama-evil/x", "https://data.example.com.evil.net/x", "http://data.example.com/x"}) {
    EXPECT_FALSE(a.Allows(uri)) << uri;
  }
  EXPECT_EQ(a.FileRoots(), std::vector<std::string>{"/data/team-a"});
  const TenantUriPolicy other = policy->For("team-z").value();
  EXPECT_EQ(other.tenant, "team-z");
  EXPECT_TRUE(other.Allows("hf://anyone/model"));
  EXPECT_FALSE(other.private_networks);
  auto none = UriPolicy::Parse(R"({"tenants": {"team-a": {"allow": []}}})")->For("team-b");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(none.status().message(), "tenant team-b has no URI policy: it may name no URI");
  EXPECT_EQ(UriPolicy::Parse(R"({"tenants": {"a": {"allow": ["gopher://x"]}}})").status().message(),
            "tenants.a.allow: 'gopher://x' is not a URI of a supported scheme (file, s3, http, https, hf)");
  EXPECT_EQ(UriPolicy::Parse(R"({"tenants": {"a": {}}})").status().message(),
            "tenants.a.allow: a list of URI prefixes is required");

  v1::JobSpec spec = Valid();
  spec.set_model_uri("file:///data/team-a/m");
  spec.mutable_output()->set_uri("s3://models/team-b/out");
  EXPECT_EQ(CheckUriPolicy(spec, a).message(),
            "spec.output.uri: 's3://models/team-b/out' is outside tenant team-a's URI policy (allowed: "
            "file:///data/team-a, s3://models/team-a, hf://meta-llama, https://data.example.com)");
  spec.mutable_output()->set_uri("s3://models/team-a/out");
  EXPECT_TRUE(CheckUriPolicy(spec, a).ok());
}

}  // namespace
}  // namespace shears
