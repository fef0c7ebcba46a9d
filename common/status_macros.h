#pragma once
// The usual early-return helpers for absl::Status and absl::StatusOr.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SHEARS_CONCAT_INNER(a, b) a##b
#define SHEARS_CONCAT(a, b) SHEARS_CONCAT_INNER(a, b)

#define SHEARS_RETURN_IF_ERROR(expr)              \
  do {                                            \
    if (absl::Status _st = (expr); !_st.ok()) {   \
      return _st;                                 \
    }                                             \
  } while (0)

// SHEARS_ASSIGN_OR_RETURN(auto x, F()) declares x from a StatusOr or returns its error.
#define SHEARS_ASSIGN_OR_RETURN(lhs, expr) \
  SHEARS_ASSIGN_OR_RETURN_IMPL(SHEARS_CONCAT(_status_or_, __LINE__), lhs, expr)
#define SHEARS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
