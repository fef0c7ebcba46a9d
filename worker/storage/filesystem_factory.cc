#include "worker/storage/filesystem_factory.h"

#include "absl/strings/str_cat.h"
#include "common/uri.h"
#include "worker/storage/local_filesystem.h"
#include "worker/storage/remote_filesystem.h"
#include "worker/storage/s3_filesystem.h"

namespace shears::worker {

absl::StatusOr<std::unique_ptr<FileSystem>> FileSystemFor(const std::string& uri, const StorageOptions& options) {
  auto parsed = ParseUri(uri);
  if (!parsed.ok()) return parsed.status();
  if (parsed->scheme == "file") {
    return std::make_unique<LocalFileSystem>(options.allowed_file_roots,
                                             options.policy != nullptr ? options.policy->FileRoots()
                                                                       : std::vector<std::string>());
  }
  if (parsed->scheme == "http" || parsed->scheme == "https") return std::make_unique<HttpFileSystem>(options);
  if (parsed->scheme == "hf") return std::make_unique<HubFileSystem>(options);
  if (parsed->scheme == "s3") return std::make_unique<S3FileSystem>(options, S3Config::For(options.credentials));
  return absl::InvalidArgumentError(absl::StrCat("'", uri, "': scheme '", parsed->scheme,
                                                 "' is not supported (supported: ", SupportedSchemes(), ")"));
}

}  // namespace shears::worker
