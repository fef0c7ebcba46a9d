#pragma once
// The protobuf JSON mapping as Shears writes and reads it: field names as in the .proto
// (snake_case, which parsers accept as well as lowerCamelCase), enums by name.

#include <google/protobuf/message.h>

#include <string>

#include "absl/status/status.h"

namespace shears {

std::string ToJson(const google::protobuf::Message& message, bool multiline = true);
// INVALID_ARGUMENT naming `what` (a file name, say) when the text is not that message.
absl::Status FromJson(const std::string& text, const std::string& what, google::protobuf::Message* message);
// Reads a JobSpec or any other message from a JSON file.
absl::Status ReadJsonFile(const std::string& path, google::protobuf::Message* message);

}  // namespace shears
