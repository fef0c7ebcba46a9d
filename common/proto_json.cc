#include "common/proto_json.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace shears {

std::string ToJson(const google::protobuf::Message& message, bool multiline) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = multiline;
  options.preserve_proto_field_names = true;
  std::string json;
  // Printing a valid message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

absl::Status FromJson(const std::string& text, const std::string& what, google::protobuf::Message* message) {
  auto st = google::protobuf::util::JsonStringToMessage(text, message);
  if (!st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not a ", message->GetDescriptor()->name(), ": ", st.message().as_string()));
  }
  return absl::OkStatus();
}

absl::Status ReadJsonFile(const std::string& path, google::protobuf::Message* message) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return FromJson(*text, path, message);
}

}  // namespace shears
