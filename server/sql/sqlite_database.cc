#include "server/sql/sqlite_database.h"

#include "absl/strings/str_cat.h"

namespace shears::server::sql {
namespace {

class SqliteStatement : public Statement {
 public:
  SqliteStatement(sqlite3* db, const std::string& sql) : db_(db) {
    prepare_rc_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr);
  }
  ~SqliteStatement() override { sqlite3_finalize(stmt_); }

  Statement& Bind(int index, int64_t value) override {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  Statement& Bind(int index, const std::string& value) override {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindBlob(int index, const std::string& value) override {
    sqlite3_bind_blob(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindNull(int index) override {
    sqlite3_bind_null(stmt_, index);
    return *this;
  }

  absl::StatusOr<bool> Step() override {
    if (prepare_rc_ != SQLITE_OK) return absl::InternalError(absl::StrCat("sqlite prepare: ", sqlite3_errmsg(db_)));
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(rc, sqlite3_errmsg(db_));
  }

  int64_t Int(int column) const override { return sqlite3_column_int64(stmt_, column); }
  std::string Text(int column) const override {
    const void* p = sqlite3_column_blob(stmt_, column);
    const int n = sqlite3_column_bytes(stmt_, column);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), static_cast<size_t>(n));
  }
  bool IsNull(int column) const override { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int prepare_rc_;
};

}  // namespace

absl::Status SqliteError(int rc, const std::string& message) {
  switch (rc & 0xff) {  // the primary code of an extended one
    case SQLITE_CONSTRAINT:
      return absl::AlreadyExistsError(message);
    case SQLITE_FULL:
      // A full disk (or the store's --max-db-bytes) passes once retention or an operator frees
      // room: the caller retries, a worker keeps its outcome.
      return absl::UnavailableError(absl::StrCat("the job store is full (", message,
                                                 "); try again once there is room"));
    case SQLITE_IOERR:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(absl::StrCat("the job store could not write (", message, "); try again"));
    default:
      return absl::InternalError(absl::StrCat("sqlite: ", message));
  }
}

absl::StatusOr<std::unique_ptr<SqliteDatabase>> SqliteDatabase::Open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("open database ", path, ": ", msg));
  }
  sqlite3_busy_timeout(db, 5000);
  return std::unique_ptr<SqliteDatabase>(new SqliteDatabase(db));
}

SqliteDatabase::~SqliteDatabase() { sqlite3_close(db_); }

absl::StatusOr<Session> SqliteDatabase::Acquire() {
  // One connection: a transaction is not interleaved with another's statements.
  lent_mu_.LockWhen(absl::Condition(
      +[](bool* lent) { return !*lent; }, &lent_));
  lent_ = true;
  lent_mu_.Unlock();
  return Session(this, [this] {
    absl::MutexLock lock(&lent_mu_);
    lent_ = false;
  });
}

std::unique_ptr<Statement> SqliteDatabase::Prepare(const std::string& sql) {
  return std::make_unique<SqliteStatement>(db_, sql);
}

absl::Status SqliteDatabase::Exec(const std::string& sql) {
  char* err = nullptr;
  if (const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err); rc != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return SqliteError(rc, msg);
  }
  return absl::OkStatus();
}

}  // namespace shears::server::sql
