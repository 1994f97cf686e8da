// SqliteSource: a Source that reads an SQLite database file, opened read-only. The database has
// one table per entity, named Entity::table, with one column per catalog field in catalog order
// (SqliteSchema() below); worker/demo_data.h fills one with demo data.
//
// Each Scan runs one prepared SELECT built by CompileQuery (every filter value a bound
// parameter) and converts each column to a Cell by the catalog type of its field.
//
// Thread safety: as Source — one thread at a time. Open one SqliteSource per job; any number
// may read the same file at once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/catalog.h"
#include "common/filters.h"
#include "worker/row.h"
#include "worker/source.h"

struct sqlite3;

namespace exportd {

// The statements that create the entity's table: CREATE TABLE "<table>" with one column per
// catalog field in catalog order ("id" INTEGER PRIMARY KEY; string and timestamp fields TEXT,
// timestamps as UTC "YYYY-MM-DDTHH:MM:SSZ"; integer fields INTEGER; number fields REAL;
// boolean fields INTEGER 0 or 1), then CREATE INDEX on any "account_id" column.
std::string SqliteSchema(const catalog::Entity& entity);

class SqliteSource : public Source {
 public:
  // Opens the database at `path` read-only (it is never created or changed).
  // Errors: NOT_FOUND when there is no file at `path`; FAILED_PRECONDITION when it is not an
  // SQLite database; UNAVAILABLE when it cannot be opened or read.
  static absl::StatusOr<std::unique_ptr<SqliteSource>> Open(const std::string& path);

  ~SqliteSource() override;
  SqliteSource(const SqliteSource&) = delete;
  SqliteSource& operator=(const SqliteSource&) = delete;

  // Cells follow the catalog type of each field: NULL -> monostate, string and timestamp ->
  // std::string, integer -> int64_t, number -> double, boolean -> bool. Errors: INVALID_ARGUMENT
  // for a field or condition not in the entity's catalog; UNAVAILABLE with SQLite's message when
  // the query fails (a missing table or column, a locked or damaged file). Rows delivered before
  // an error stay delivered.
  [[nodiscard]] absl::Status Scan(const catalog::Entity& entity,
                                  const std::vector<std::string>& fields,
                                  const filters::Condition& condition,
                                  const std::function<bool(const Row&)>& row) override;

  // SELECT count(*) with the same condition. Errors as Scan.
  [[nodiscard]] absl::StatusOr<int64_t> Count(const catalog::Entity& entity,
                                              const filters::Condition& condition) override;

 private:
  SqliteSource(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

  sqlite3* const db_;  // Owned; closed by the destructor.
  const std::string path_;
};

}  // namespace exportd
