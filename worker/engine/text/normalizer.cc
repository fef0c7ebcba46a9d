#include "worker/engine/text/normalizer.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"

namespace shears::engine {
namespace {

std::string Nfc(const std::string& text) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  const icu::UnicodeString in = icu::UnicodeString::fromUTF8(text);
  if (U_FAILURE(status) || nfc->isNormalized(in, status)) return text;
  status = U_ZERO_ERROR;
  const icu::UnicodeString out = nfc->normalize(in, status);
  if (U_FAILURE(status)) return text;
  std::string utf8;
  out.toUTF8String(utf8);
  return utf8;
}

}  // namespace

absl::StatusOr<Normalizer> Normalizer::FromJson(const nlohmann::json& json, const std::string& path) {
  Normalizer n;
  std::function<absl::Status(const nlohmann::json&)> add = [&](const nlohmann::json& j) -> absl::Status {
    if (j.is_null()) return absl::OkStatus();
    const std::string type = j.value("type", "");
    if (type == "Sequence") {
      for (const auto& inner : j.at("normalizers")) SHEARS_RETURN_IF_ERROR(add(inner));
    } else if (type == "NFC") {
      n.steps_.push_back({Step::Kind::kNfc, "", ""});
    } else if (type == "Prepend") {
      n.steps_.push_back({Step::Kind::kPrepend, j.at("prepend").get<std::string>(), ""});
    } else if (type == "Replace" && j.at("pattern").contains("String")) {
      n.steps_.push_back({Step::Kind::kReplace, j["pattern"]["String"].get<std::string>(),
                          j.at("content").get<std::string>()});
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": normalizer '", type, "' is not supported (supported: NFC, Prepend, Replace of a String, ",
                       "Sequence)"));
    }
    return absl::OkStatus();
  };
  try {
    SHEARS_RETURN_IF_ERROR(add(json));
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": normalizer: ", e.what()));
  }
  return n;
}

std::string Normalizer::Normalize(const std::string& text) const {
  std::string out = text;
  for (const auto& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kNfc:
        out = Nfc(out);
        break;
      case Step::Kind::kPrepend:
        if (!out.empty()) out = step.what + out;
        break;
      case Step::Kind::kReplace:
        if (!step.what.empty()) out = absl::StrReplaceAll(out, {{step.what, step.with}});
        break;
    }
  }
  return out;
}

}  // namespace shears::engine
