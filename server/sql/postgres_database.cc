#include "server/sql/postgres_database.h"

#include <poll.h>

#include <cstdlib>
#include <optional>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shears::server::sql {
namespace {

constexpr char kChannel[] = "shears_jobs";
constexpr Oid kByteaOid = 17;

std::string Trimmed(const char* message) {
  return std::string(absl::StripTrailingAsciiWhitespace(message == nullptr ? "" : message));
}

// A failed statement as a status. Whatever a later try may get past (a lost or refused connection,
// the server shutting down, a full disk, a statement timeout, a deadlock) is UNAVAILABLE, which
// workers and clients retry; a unique key ALREADY_EXISTS; the rest INTERNAL.
absl::Status PgError(PGconn* conn, const PGresult* result) {
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const std::string message = Trimmed(result != nullptr ? PQresultErrorMessage(result) : PQerrorMessage(conn));
  const std::string code = state != nullptr ? state : "";
  if (PQstatus(conn) == CONNECTION_BAD || code.empty() || absl::StartsWith(code, "08") ||
      absl::StartsWith(code, "57P")) {
    return absl::UnavailableError(absl::StrCat("the job store is unreachable (postgresql: ", message, "); try again"));
  }
  if (code == "53100") {
    return absl::UnavailableError(absl::StrCat("the job store is full (postgresql: ", message,
                                               "); try again once there is room"));
  }
  if (absl::StartsWith(code, "53") || code == "40001" || code == "40P01" || code == "55P03" || code == "57014") {
    return absl::UnavailableError(absl::StrCat("the job store is busy (postgresql ", code, ": ", message, "); try again"));
  }
  if (code == "23505") return absl::AlreadyExistsError(absl::StrCat("postgresql: ", message));
  return absl::InternalError(absl::StrCat("postgresql ", code, ": ", message));
}

// `?` placeholders become PostgreSQL's $1, $2, ...; quoted text is left alone.
std::string NumberPlaceholders(const std::string& sql) {
  std::string out;
  int n = 0;
  bool quoted = false;
  for (char c : sql) {
    if (c == '\'') quoted = !quoted;
    if (c == '?' && !quoted) {
      absl::StrAppend(&out, "$", ++n);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// The statements prepared on one connection, by their text: each is parsed once per connection
// rather than at every call (the store's statements are a few dozen texts).
class PreparedStatements {
 public:
  explicit PreparedStatements(PGconn* conn) : conn_(conn) {}
  // The name `sql` is prepared under, preparing it at its first use. A prepared statement outlives
  // a rolled-back transaction; it dies with its connection, as this does.
  absl::StatusOr<std::string> NameOf(const std::string& sql) {
    if (auto it = names_.find(sql); it != names_.end()) return it->second;
    std::string name = absl::StrCat("shears_", names_.size());
    PGresult* result = PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr);
    const bool prepared = PQresultStatus(result) == PGRES_COMMAND_OK;
    absl::Status st = prepared ? absl::OkStatus() : PgError(conn_, result);
    PQclear(result);
    if (!prepared) return st;
    names_.emplace(sql, name);
    return name;
  }

 private:
  PGconn* const conn_;
  absl::flat_hash_map<std::string, std::string> names_;
};

class PgStatement : public Statement {
 public:
  PgStatement(PGconn* conn, PreparedStatements* prepared, const std::string& sql)
      : conn_(conn), prepared_(prepared), sql_(NumberPlaceholders(sql)) {}
  ~PgStatement() override { PQclear(result_); }

  Statement& Bind(int index, int64_t value) override { return Set(index, std::to_string(value), 0); }
  Statement& Bind(int index, const std::string& value) override { return Set(index, value, 0); }
  Statement& BindBlob(int index, const std::string& value) override { return Set(index, value, 1); }
  Statement& BindNull(int index) override { return Set(index, std::nullopt, 0); }

  absl::StatusOr<bool> Step() override {
    if (result_ == nullptr) {
      std::vector<const char*> values;
      std::vector<int> lengths;
      for (const auto& p : params_) {
        values.push_back(p.value ? p.value->c_str() : nullptr);
        lengths.push_back(p.value ? static_cast<int>(p.value->size()) : 0);
      }
      std::vector<int> formats;
      for (const auto& p : params_) formats.push_back(p.format);
      SHEARS_ASSIGN_OR_RETURN(const std::string name, prepared_->NameOf(sql_));
      result_ = PQexecPrepared(conn_, name.c_str(), static_cast<int>(params_.size()), values.data(), lengths.data(),
                               formats.data(), /*resultFormat=*/0);
      const ExecStatusType status = PQresultStatus(result_);
      if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return PgError(conn_, result_);
      row_ = -1;
    }
    if (PQresultStatus(result_) != PGRES_TUPLES_OK) return false;
    return ++row_ < PQntuples(result_);
  }

  int64_t Int(int column) const override { return std::strtoll(PQgetvalue(result_, row_, column), nullptr, 10); }
  std::string Text(int column) const override {
    if (PQgetisnull(result_, row_, column)) return "";
    const char* text = PQgetvalue(result_, row_, column);
    if (PQftype(result_, column) != kByteaOid) return std::string(text, PQgetlength(result_, row_, column));
    size_t n = 0;  // bytea arrives as text in its hex form, \x0a1b...
    unsigned char* bytes = PQunescapeBytea(reinterpret_cast<const unsigned char*>(text), &n);
    std::string out(reinterpret_cast<const char*>(bytes), n);
    PQfreemem(bytes);
    return out;
  }
  bool IsNull(int column) const override { return PQgetisnull(result_, row_, column) != 0; }

 private:
  struct Param {
    std::optional<std::string> value;
    int format = 0;  // 0 text, 1 binary (blobs go as bytes)
  };
  Statement& Set(int index, std::optional<std::string> value, int format) {
    if (index < 1) return *this;
    if (static_cast<size_t>(index) > params_.size()) params_.resize(index);
    params_[index - 1] = Param{std::move(value), format};
    return *this;
  }

  PGconn* const conn_;
  PreparedStatements* const prepared_;
  const std::string sql_;
  std::vector<Param> params_;
  PGresult* result_ = nullptr;
  int row_ = -1;
};

const char* const kKeywords[] = {"dbname", "connect_timeout", "options", "application_name", "keepalives_idle",
                                 "keepalives_interval", "keepalives_count", nullptr};

// Connects with the pool's bounds: connection and statement timeouts, and TCP keepalives that
// notice a dead server within about 20 seconds.
PGconn* ConnectWithin(const std::string& url, absl::Duration timeout) {
  const std::string seconds = std::to_string(std::max<int64_t>(1, absl::ToInt64Seconds(timeout)));
  // Notices (CREATE ... IF NOT EXISTS finding it there) are not for the server's log.
  const std::string options = absl::StrCat("-c client_min_messages=warning -c statement_timeout=", absl::ToInt64Milliseconds(timeout),
                                           " -c idle_in_transaction_session_timeout=",
                                           absl::ToInt64Milliseconds(3 * timeout));
  const char* values[] = {url.c_str(), seconds.c_str(), options.c_str(), "shears-server", "10", "5", "2", nullptr};
  return PQconnectdbParams(kKeywords, values, /*expand_dbname=*/1);
}

}  // namespace

class PostgresDatabase::PgConnection : public Connection {
 public:
  explicit PgConnection(PGconn* conn) : conn_(conn), prepared_(conn) {}
  ~PgConnection() override { PQfinish(conn_); }
  std::unique_ptr<Statement> Prepare(const std::string& sql) override {
    return std::make_unique<PgStatement>(conn_, &prepared_, sql);
  }
  absl::Status Exec(const std::string& sql) override {
    PGresult* result = PQexec(conn_, sql.c_str());
    const ExecStatusType status = PQresultStatus(result);
    absl::Status st = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK ? absl::OkStatus() : PgError(conn_, result);
    PQclear(result);
    return st;
  }
  bool Lost() const override { return PQstatus(conn_) != CONNECTION_OK; }
  // Whether it may serve another session: not lost, and no transaction left open.
  bool Reusable() const { return !Lost() && PQtransactionStatus(conn_) == PQTRANS_IDLE; }
  PGconn* get() const { return conn_; }

 private:
  PGconn* const conn_;
  PreparedStatements prepared_;
};

PostgresDatabase::PostgresDatabase(std::string url, DatabaseOptions options)
    : url_(std::move(url)), options_(options) {}

absl::StatusOr<std::unique_ptr<PostgresDatabase>> PostgresDatabase::Open(const std::string& url,
                                                                       const DatabaseOptions& options) {
  if (options.pool_size < 1) return absl::InvalidArgumentError("--db-pool: must be at least 1");
  if (options.timeout < absl::Seconds(1)) return absl::InvalidArgumentError("--db-timeout: must be at least 1s");
  std::unique_ptr<PostgresDatabase> db(new PostgresDatabase(url, options));
  auto first = db->Connect();
  if (!first.ok()) return first.status();
  absl::MutexLock lock(&db->mu_);
  db->idle_.push_back(std::move(*first));
  db->open_ = 1;
  return db;
}

PostgresDatabase::~PostgresDatabase() {
  stop_ = true;
  if (listener_.joinable()) listener_.join();
}

absl::StatusOr<std::unique_ptr<PostgresDatabase::PgConnection>> PostgresDatabase::Connect() const {
  PGconn* conn = ConnectWithin(url_, options_.timeout);
  if (conn == nullptr) return absl::ResourceExhaustedError("postgresql: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string message = Trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return absl::UnavailableError(
        absl::StrCat("the job store is unreachable (postgresql: ", message, "); try again"));
  }
  return std::make_unique<PgConnection>(conn);
}

absl::StatusOr<Session> PostgresDatabase::Acquire() {
  std::unique_ptr<PgConnection> connection;
  {
    absl::MutexLock lock(&mu_);
    auto free = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !idle_.empty() || open_ < options_.pool_size; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&free), options_.timeout)) {
      return absl::UnavailableError(absl::StrCat("the job store is busy: all ", options_.pool_size,
                                                 " connections (--db-pool) were in use for ",
                                                 absl::FormatDuration(options_.timeout), "; try again"));
    }
    if (!idle_.empty()) {
      connection = std::move(idle_.back());
      idle_.pop_back();
    } else {
      ++open_;  // counted while it opens, so that the pool never holds more than its size
    }
  }
  if (connection == nullptr) {
    auto opened = Connect();
    if (!opened.ok()) {
      absl::MutexLock lock(&mu_);
      --open_;
      return opened.status();
    }
    connection = std::move(*opened);
  }
  PgConnection* lent = connection.release();
  return Session(lent, [this, lent] { GiveBack(std::unique_ptr<PgConnection>(lent)); });
}

void PostgresDatabase::GiveBack(std::unique_ptr<PgConnection> connection) {
  // A connection that was lost, or left inside a transaction, is closed: the next session opens a
  // fresh one rather than inherit its state.
  const bool reusable = connection->Reusable();
  const bool lost = connection->Lost();
  if (!reusable) connection.reset();
  std::vector<std::unique_ptr<PgConnection>> stale;
  absl::MutexLock lock(&mu_);
  if (reusable) {
    idle_.push_back(std::move(connection));
    return;
  }
  --open_;
  // One connection lost is most often all of them (the server restarted, or failed over): the idle
  // ones are closed too, so that the next session does not find the same.
  if (lost) {
    open_ -= static_cast<int>(idle_.size());
    stale.swap(idle_);
  }
}

absl::Status PostgresDatabase::Announce(Connection& connection, const std::string& payload) {
  auto notify = connection.Prepare(absl::StrCat("SELECT pg_notify('", kChannel, "', ?)"));
  notify->Bind(1, payload);
  return notify->Run();
}

void PostgresDatabase::Listen(std::function<void(const std::string& payload)> heard) {
  if (listener_.joinable()) return;
  heard_ = std::move(heard);
  listener_ = std::thread([this] { ListenLoop(); });
  // A server that answers calls before it listens would miss what others commit meanwhile.
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&listening_), options_.timeout);
}

void PostgresDatabase::ListenLoop() {
  bool listened_before = false;
  while (!stop_) {
    // A connection of its own, outside the pool: it is never lent, and never idle.
    auto connection = Connect();
    const absl::Status listening =
        connection.ok() ? (*connection)->Exec(absl::StrCat("LISTEN ", kChannel)) : connection.status();
    if (!listening.ok()) {
      if (listened_before) std::cerr << "shears-server: listening for other replicas: " << listening.message() << "\n";
      for (int i = 0; i < 4 && !stop_; ++i) absl::SleepFor(absl::Milliseconds(250));
      continue;
    }
    PGconn* conn = (*connection)->get();
    // What was announced while this replica was not listening is lost: everyone looks again.
    if (listened_before) heard_("");
    listened_before = true;
    {
      absl::MutexLock lock(&mu_);
      listening_ = true;
    }
    while (!stop_) {
      pollfd fd{PQsocket(conn), POLLIN, 0};
      if (poll(&fd, 1, 250) < 0 && errno != EINTR) break;
      if (PQconsumeInput(conn) == 0) break;  // the connection is lost
      while (PGnotify* n = PQnotifies(conn)) {
        heard_(n->extra);
        PQfreemem(n);
      }
      if ((*connection)->Lost()) break;
    }
  }
}

}  // namespace shears::server::sql
