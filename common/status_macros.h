// Status propagation helpers in standard C++ (Debian's Abseil has no status macros).
//
//   EXPORTD_RETURN_IF_ERROR(store.Commit(changes));
//   EXPORTD_ASSIGN_OR_RETURN(JobRecord record, store.Get(id));
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define EXPORTD_STATUS_CONCAT_INNER(a, b) a##b
#define EXPORTD_STATUS_CONCAT(a, b) EXPORTD_STATUS_CONCAT_INNER(a, b)

// Returns the status of `expr` from the enclosing function when it is not OK.
#define EXPORTD_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::absl::Status exportd_status_ = (expr);           \
    if (!exportd_status_.ok()) return exportd_status_; \
  } while (false)

// Evaluates `rexpr` (a StatusOr); returns its status when not OK, else moves its value into
// `lhs`, which may be a declaration.
#define EXPORTD_ASSIGN_OR_RETURN(lhs, rexpr) \
  EXPORTD_ASSIGN_OR_RETURN_IMPL(EXPORTD_STATUS_CONCAT(exportd_statusor_, __LINE__), lhs, rexpr)

#define EXPORTD_ASSIGN_OR_RETURN_IMPL(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(*statusor)
