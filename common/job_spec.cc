#include "common/job_spec.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/uri.h"

namespace shears {
namespace {

// The structures each method supports in this build; the first is its default.
std::vector<v1::Structure> SupportedStructures(v1::Method method) {
  switch (method) {
    case v1::METHOD_MAGNITUDE:
      return {v1::STRUCTURE_UNSTRUCTURED};
    default:
      return {};
  }
}

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("spec.", field, ": ", what));
}

absl::Status ValidateUri(const std::string& field, const std::string& uri) {
  if (uri.empty()) return Invalid(field, "is required");
  auto parsed = ParseUri(uri);
  if (!parsed.ok()) return Invalid(field, std::string(parsed.status().message()));
  if (!IsSupportedScheme(parsed->scheme)) {
    return Invalid(field, absl::StrCat("scheme '", parsed->scheme, "' is not supported (supported: file)"));
  }
  if (auto path = LocalPath(uri); !path.ok()) return Invalid(field, std::string(path.status().message()));
  return absl::OkStatus();
}

}  // namespace

void ApplySpecDefaults(v1::JobSpec& spec) {
  if (spec.structure() == v1::STRUCTURE_UNSPECIFIED) {
    auto supported = SupportedStructures(spec.method());
    if (!supported.empty()) spec.set_structure(supported.front());
  }
  if (spec.output().format() == v1::OUTPUT_FORMAT_UNSPECIFIED) {
    spec.mutable_output()->set_format(v1::OUTPUT_FORMAT_DENSE_SAFETENSORS);
  }
}

absl::Status ValidateSpec(const v1::JobSpec& spec) {
  if (auto st = ValidateUri("model_uri", spec.model_uri()); !st.ok()) return st;
  if (spec.method() == v1::METHOD_UNSPECIFIED || !v1::Method_IsValid(spec.method())) {
    return Invalid("method", "is required (e.g. METHOD_MAGNITUDE)");
  }
  auto supported = SupportedStructures(spec.method());
  if (supported.empty()) {
    return Invalid("method", absl::StrCat(v1::Method_Name(spec.method()), " is not supported yet"));
  }
  if (std::find(supported.begin(), supported.end(), spec.structure()) == supported.end()) {
    return Invalid("structure", absl::StrCat(v1::Structure_Name(spec.structure()), " is not supported with ",
                                             v1::Method_Name(spec.method())));
  }
  if (!(spec.target_sparsity() >= 0.0 && spec.target_sparsity() < 1.0)) {
    return Invalid("target_sparsity", absl::StrCat("must be in [0, 1), got ", spec.target_sparsity()));
  }
  if (spec.has_calibration()) {
    return Invalid("calibration", absl::StrCat(v1::Method_Name(spec.method()), " uses no calibration data"));
  }
  if (spec.has_evaluation()) {
    const auto& eval = spec.evaluation();
    if (auto st = ValidateUri("evaluation.dataset_uri", eval.dataset_uri()); !st.ok()) return st;
    if (eval.seq_len() < 2) return Invalid("evaluation.seq_len", absl::StrCat("must be at least 2, got ", eval.seq_len()));
    if (eval.num_samples() != 0) {
      return Invalid("evaluation.num_samples", "evaluation uses every window; cap it with max_tokens");
    }
    if (eval.max_tokens() < 0) return Invalid("evaluation.max_tokens", "must not be negative");
  }
  if (auto st = ValidateUri("output.uri", spec.output().uri()); !st.ok()) return st;
  if (absl::StripSuffix(spec.output().uri(), "/") == absl::StripSuffix(spec.model_uri(), "/")) {
    return Invalid("output.uri", "must differ from model_uri, or the input model would be overwritten");
  }
  if (spec.output().format() != v1::OUTPUT_FORMAT_DENSE_SAFETENSORS) {
    return Invalid("output.format", "only OUTPUT_FORMAT_DENSE_SAFETENSORS is supported");
  }
  for (const auto& [key, value] : spec.labels()) {
    if (key.empty() || key.size() > 63) return Invalid("labels", absl::StrCat("key '", key, "' must be 1-63 characters"));
  }
  return absl::OkStatus();
}

}  // namespace shears
