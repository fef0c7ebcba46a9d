#pragma once
// A thin RAII layer over the SQLite C API with absl::Status errors.

#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace shears::server {

// An SQLite result code as a status: a full store or a failed write is UNAVAILABLE (retried by
// callers), a constraint ALREADY_EXISTS, anything else INTERNAL.
absl::Status SqliteError(int rc, const std::string& message);

class Statement {
 public:
  Statement(sqlite3* db, const char* sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binds are 1-based, as in SQLite.
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, const std::string& value);
  Statement& BindBlob(int index, const std::string& value);
  Statement& BindNull(int index);

  // True while a row is available; false when done.
  absl::StatusOr<bool> Step();
  // Runs a statement that returns no rows.
  absl::Status Run();

  int64_t Int(int column) const;
  std::string Text(int column) const;
  bool IsNull(int column) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int prepare_rc_;
};

class Database {
 public:
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path);
  ~Database();
  sqlite3* get() { return db_; }
  absl::Status Exec(const std::string& sql);

 private:
  explicit Database(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

}  // namespace shears::server
