#pragma once
// The job store's tables, and how a store written by an older server becomes the current version.

#include "absl/status/status.h"
#include "server/sql/database.h"

namespace shears::server {

// Version 1: jobs belong to a tenant, and request ids are unique within one.
// Version 2: ended jobs keep their end time in a column, for retention.
// PostgreSQL stores begin at version 2.
inline constexpr int kJobStoreSchemaVersion = 2;

// Creates the tables, or migrates them to kJobStoreSchemaVersion; a store newer than this server
// is FAILED_PRECONDITION. On PostgreSQL, under an advisory lock: replicas starting at once take
// turns, and the second finds the work done.
absl::Status MigrateJobStore(sql::Database& db);

}  // namespace shears::server
