// SqlQuery: the SELECT that reads one export from the SQLite source, with its parameters. Field
// names come only from the catalog (quoted identifiers of known fields) and every value is a
// bound parameter: nothing from a request is ever spliced into the SQL text.
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/catalog.h"
#include "common/filters.h"

namespace exportd {

struct SqlQuery {
  // SELECT "f1", "f2" FROM "table" WHERE ... ORDER BY "id"  (with ?1, ?2, ... placeholders)
  std::string sql;
  // The value of placeholder i+1.
  std::vector<filters::Literal> params;
};

// The query for an export of `fields` (all in the entity's catalog) filtered by `condition`.
// Errors: INVALID_ARGUMENT for a field not in the catalog.
absl::StatusOr<SqlQuery> CompileQuery(const catalog::Entity& entity,
                                      const std::vector<std::string>& fields,
                                      const filters::Condition& condition);

}  // namespace exportd
