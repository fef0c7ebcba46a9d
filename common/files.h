#pragma once
// Local-file helpers with absl::Status errors that name the path.

#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace shears {

absl::StatusOr<std::string> ReadFile(const std::string& path);
// A file a command-line flag names, and where its contents go.
struct FlagFile {
  const char* flag;  // "--tls-cert"
  const std::string& path;  // empty: the flag was not given, and nothing is read
  std::string* contents;
};
// Reads each given file; INVALID_ARGUMENT naming the flag and the path for one that cannot be.
absl::Status ReadFlagFiles(std::initializer_list<FlagFile> files);
// Writes to a temporary file beside `path`, syncs it, then renames it into place, so a reader
// sees the old contents or the new, never a mix.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);
// Same contract as WriteFileAtomically, copying from another file.
absl::Status CopyFileAtomically(const std::string& from, const std::string& to);
// Moves `from` to `to` by rename, durable first; a copy (then removal) when they are on different
// filesystems. Either way a reader of `to` sees the old file or all of the new one.
absl::Status MoveFileAtomically(const std::string& from, const std::string& to);
absl::Status MakeDirectories(const std::string& path);
absl::Status RemoveAll(const std::string& path);

}  // namespace shears
