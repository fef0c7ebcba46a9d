#include "common/job_spec.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/job_translation.h"
#include "common/limits.h"
#include "common/uri.h"
#include "worker/engine/api/job_rules.h"

namespace shears {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("spec.", field, ": ", what));
}

absl::Status ValidateUri(const std::string& field, const std::string& uri) {
  if (uri.empty()) return Invalid(field, "is required");
  auto parsed = ParseUri(uri);
  if (!parsed.ok()) return Invalid(field, std::string(parsed.status().message()));
  if (!IsSupportedScheme(parsed->scheme)) {
    return Invalid(field, absl::StrCat("scheme '", parsed->scheme, "' is not supported (supported: ",
                                       SupportedSchemes(), ")"));
  }
  if (parsed->scheme == "file") {
    if (auto path = LocalPath(uri); !path.ok()) return Invalid(field, std::string(path.status().message()));
  }
  return absl::OkStatus();
}

// Every dataset URI the spec names, by field.
std::vector<std::pair<std::string, std::string>> DatasetUris(const v1::JobSpec& spec) {
  std::vector<std::pair<std::string, std::string>> out;
  if (spec.has_calibration()) out.emplace_back("calibration.dataset_uri", spec.calibration().dataset_uri());
  if (spec.has_evaluation()) out.emplace_back("evaluation.dataset_uri", spec.evaluation().dataset_uri());
  if (spec.has_fine_tune()) out.emplace_back("fine_tune.dataset_uri", spec.fine_tune().dataset_uri());
  return out;
}

// The URIs: well-formed, of a scheme this build reads (or writes, for the output), datasets as
// files, and an output that cannot overwrite the input.
absl::Status ValidateUris(const v1::JobSpec& spec) {
  for (const auto& [field, uri] : DatasetUris(spec)) {
    if (auto st = ValidateUri(field, uri); !st.ok()) return st;
    if (ParseUri(uri)->scheme == "hf") return Invalid(field, "hf:// names a model repository, not a dataset file");
  }
  if (auto st = ValidateUri("output.uri", spec.output().uri()); !st.ok()) return st;
  if (const auto out = ParseUri(spec.output().uri()); IsReadOnlyScheme(out->scheme)) {
    return Invalid("output.uri", absl::StrCat(out->scheme, ":// can be read from but not written to"));
  }
  // Spelled any way (`<model>/.`, a trailing slash, a file inside it), an output that overlaps an
  // input would overwrite what the job reads.
  for (const auto& [field, uri] : InputUris(spec)) {
    if (UrisOverlap(spec.output().uri(), uri)) {
      return Invalid("output.uri", absl::StrCat("overlaps ", field, " (", uri, "): the job would overwrite what it reads"));
    }
  }
  return absl::OkStatus();
}

// Fields the engine's options have no room for: what they hold is decided here.
absl::Status ValidateProtoOnlyFields(const v1::JobSpec& spec) {
  if (spec.calibration().max_tokens() != 0) return Invalid("calibration.max_tokens", "applies to evaluation only");
  if (spec.evaluation().num_samples() != 0) {
    return Invalid("evaluation.num_samples", "evaluation uses every window; cap it with max_tokens");
  }
  // The engine reads a negative weight as "the default"; a caller who sets one means something else.
  const auto& tune = spec.fine_tune();
  if (tune.has_uniqueness_weight() && !(tune.uniqueness_weight() >= 0.0 && std::isfinite(tune.uniqueness_weight()))) {
    return Invalid("fine_tune.uniqueness_weight", "must be a non-negative number");
  }
  return absl::OkStatus();
}

// The bounds of common/limits.h, checked before anything else looks at the spec.
absl::Status ValidateSizes(const v1::JobSpec& spec) {
  if (const size_t bytes = spec.ByteSizeLong(); bytes > kMaxSpecBytes) {
    return absl::InvalidArgumentError(absl::StrCat("spec: ", bytes, " bytes, more than the limit of ", kMaxSpecBytes));
  }
  auto uris = InputUris(spec);
  uris.emplace_back("output.uri", spec.output().uri());
  for (const auto& [field, uri] : uris) {
    if (uri.size() > kMaxUriBytes) {
      return Invalid(field, absl::StrCat(uri.size(), " bytes, more than the limit of ", kMaxUriBytes));
    }
  }
  if (spec.labels_size() > kMaxLabels) {
    return Invalid("labels", absl::StrCat(spec.labels_size(), " labels, more than the limit of ", kMaxLabels));
  }
  for (const auto& [key, value] : spec.labels()) {
    if (key.empty() || key.size() > kMaxLabelKeyBytes) {
      return Invalid("labels", absl::StrCat("key '", key.substr(0, kMaxLabelKeyBytes), key.size() > kMaxLabelKeyBytes ? "..." : "",
                                            "' must be 1-", kMaxLabelKeyBytes, " bytes"));
    }
    if (value.size() > kMaxLabelValueBytes) {
      return Invalid(absl::StrCat("labels[", key, "]"), absl::StrCat(value.size(), " bytes, more than the limit of ",
                                                                    kMaxLabelValueBytes));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckFileRoots(const v1::JobSpec& spec, const std::vector<std::string>& roots) {
  auto uris = DatasetUris(spec);
  uris.emplace_back("model_uri", spec.model_uri());
  uris.emplace_back("output.uri", spec.output().uri());
  for (const auto& [field, uri] : uris) {
    if (absl::Status st = CheckFileRoots(uri, roots); !st.ok()) {
      return absl::PermissionDeniedError(absl::StrCat("spec.", field, ": ", st.message()));
    }
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, std::string>> InputUris(const v1::JobSpec& spec) {
  auto uris = DatasetUris(spec);
  uris.emplace(uris.begin(), "model_uri", spec.model_uri());
  return uris;
}

absl::Status CheckUriPolicy(const v1::JobSpec& spec, const TenantUriPolicy& policy) {
  auto uris = InputUris(spec);
  uris.emplace_back("output.uri", spec.output().uri());
  for (const auto& [field, uri] : uris) {
    if (policy.Allows(uri)) continue;
    return absl::PermissionDeniedError(absl::StrCat("spec.", field, ": '", uri, "' is outside tenant ", policy.tenant,
                                                    "'s URI policy (allowed: ",
                                                    policy.allow.empty() ? "nothing" : absl::StrJoin(policy.allow, ", "),
                                                    ")"));
  }
  return absl::OkStatus();
}

void ApplySpecDefaults(v1::JobSpec& spec) {
  if (spec.structure() == v1::STRUCTURE_UNSPECIFIED) {
    // The method's first structure; an unknown method is ValidateSpec's to refuse.
    if (auto method = EngineMethod(spec.method(), "spec.method"); method.ok()) {
      spec.set_structure(ToProto(engine::SupportedStructures(*method).front()));
    }
  }
  if (spec.output().format() == v1::OUTPUT_FORMAT_UNSPECIFIED) {
    spec.mutable_output()->set_format(v1::OUTPUT_FORMAT_DENSE_SAFETENSORS);
  }
}

absl::Status ValidateSpec(const v1::JobSpec& spec) {
  if (auto st = ValidateSizes(spec); !st.ok()) return st;
  if (auto st = ValidateUri("model_uri", spec.model_uri()); !st.ok()) return st;
  auto options = EngineOptions(spec);
  if (!options.ok()) return options.status();
  if (auto st = ValidateUris(spec); !st.ok()) return st;
  if (auto st = ValidateProtoOnlyFields(spec); !st.ok()) return st;
  if (auto st = engine::CheckJobRules(*options); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("spec.", st.message()));
  }
  return absl::OkStatus();
}

}  // namespace shears
