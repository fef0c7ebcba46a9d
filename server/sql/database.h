#pragma once
// The job store's view of a SQL database: statements with `?` placeholders, connections handed out
// one transaction at a time, and word of what other server replicas committed. Database::Open picks
// the implementation from the URL's scheme: SQLite (a path or sqlite://PATH) for one server, or
// PostgreSQL (postgresql://...) for several replicas serving one queue.

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace shears::server::sql {

enum class Dialect { kSqlite, kPostgres };

// One statement, run once. Placeholders are `?`, bound by 1-based index; columns are 0-based.
class Statement {
 public:
  virtual ~Statement() = default;
  virtual Statement& Bind(int index, int64_t value) = 0;
  virtual Statement& Bind(int index, const std::string& value) = 0;
  virtual Statement& BindBlob(int index, const std::string& value) = 0;
  virtual Statement& BindNull(int index) = 0;

  // True while a row is available; false when done.
  virtual absl::StatusOr<bool> Step() = 0;
  // Runs a statement that returns no rows.
  absl::Status Run() {
    auto row = Step();
    return row.ok() ? absl::OkStatus() : row.status();
  }

  virtual int64_t Int(int column) const = 0;
  // Text or blob columns, as bytes.
  virtual std::string Text(int column) const = 0;
  virtual bool IsNull(int column) const = 0;
};

// One session with the database, used by one thread at a time.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual std::unique_ptr<Statement> Prepare(const std::string& sql) = 0;
  // Runs statements that return no rows (several, separated by semicolons).
  virtual absl::Status Exec(const std::string& sql) = 0;
  // Whether the session with the database server is gone (it restarted, failed over, or closed
  // this connection): no statement on it can succeed again. SQLite's, in process, never is.
  virtual bool Lost() const { return false; }
};

// A connection lent for one transaction or one read; it goes back when the session ends.
class Session {
 public:
  Session(Connection* connection, std::function<void()> give_back)
      : connection_(connection), give_back_(std::move(give_back)) {}
  Session(Session&& other) noexcept
      : connection_(std::exchange(other.connection_, nullptr)), give_back_(std::move(other.give_back_)) {}
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  Session& operator=(Session&&) = delete;
  ~Session() {
    if (connection_ != nullptr && give_back_) give_back_();
  }
  Connection& operator*() const { return *connection_; }
  Connection* operator->() const { return connection_; }

 private:
  Connection* connection_;
  std::function<void()> give_back_;
};

struct DatabaseOptions {
  // PostgreSQL: the most connections a server holds, and how long a caller waits for one (or for a
  // connection to open) before it is told UNAVAILABLE. Statements time out after `timeout` too.
  int pool_size = 8;
  absl::Duration timeout = absl::Seconds(10);
};

class Database {
 public:
  // `url`: postgresql://... or postgres://... (libpq's URI form; PGPASSWORD and PGPASSFILE are
  // honoured), sqlite://PATH, or a plain path (SQLite).
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& url, const DatabaseOptions& options = {});
  virtual ~Database() = default;

  virtual Dialect dialect() const = 0;
  // A connection for one transaction or read. SQLite has one, so sessions take turns; PostgreSQL
  // lends one of its pool, opening (or reopening, after a lost connection) as needed.
  virtual absl::StatusOr<Session> Acquire() = 0;
  // Opens a transaction that will write: SQLite takes its write lock at once, so that two writers
  // never meet halfway.
  virtual absl::Status BeginWrite(Connection& connection) = 0;

  // Announces `payload` to every server on this database once the open transaction commits
  // (PostgreSQL's NOTIFY); SQLite serves one process, where there is no one else to tell.
  virtual absl::Status Announce(Connection& connection, const std::string& payload) {
    (void)connection, (void)payload;
    return absl::OkStatus();
  }
  // Calls `heard` with each payload announced by any server (this one included), from a thread of
  // the database's. After a lost connection, once listening again, it calls `heard("")`: announcements
  // may have been missed meanwhile. Nothing for SQLite.
  virtual void Listen(std::function<void(const std::string& payload)> heard) { (void)heard; }
};

// The URL with any password replaced by "***", for logs.
std::string RedactUrl(const std::string& url);

}  // namespace shears::server::sql
