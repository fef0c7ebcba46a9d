#include "server/sql/database.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/sql/postgres_database.h"
#include "server/sql/sqlite_database.h"

namespace shears::server::sql {

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& url, const DatabaseOptions& options) {
  if (absl::StartsWith(url, "postgresql://") || absl::StartsWith(url, "postgres://")) {
    auto db = PostgresDatabase::Open(url, options);
    if (!db.ok()) return db.status();
    return std::unique_ptr<Database>(std::move(*db));
  }
  std::string path = url;
  if (absl::StartsWith(url, "sqlite://")) {
    path = url.substr(9);
  } else if (url.find("://") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--db ", RedactUrl(url), ": a path, sqlite://PATH or postgresql://... (no other store)"));
  }
  if (path.empty()) return absl::InvalidArgumentError("--db: names no SQLite file");
  auto db = SqliteDatabase::Open(path);
  if (!db.ok()) return db.status();
  return std::unique_ptr<Database>(std::move(*db));
}

std::string RedactUrl(const std::string& url) {
  std::string out = url;
  // postgresql://user:PASSWORD@host
  if (const size_t scheme = out.find("://"); scheme != std::string::npos) {
    const size_t at = out.find('@', scheme + 3);
    const size_t colon = out.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      out = absl::StrCat(out.substr(0, colon + 1), "***", out.substr(at));
    }
  }
  // ...?password=PASSWORD&...
  for (size_t key = out.find("password="); key != std::string::npos; key = out.find("password=", key + 1)) {
    const size_t value = key + 9;
    const size_t end = std::min(out.find('&', value), out.size());
    out.replace(value, end - value, "***");
  }
  return out;
}

}  // namespace shears::server::sql
