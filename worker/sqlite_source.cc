#include "worker/sqlite_source.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/str_cat.h"
#include "worker/sql_query.h"

namespace exportd {
namespace {

// How long a read waits for a writer's lock before failing with UNAVAILABLE.
constexpr int kBusyTimeoutMs = 5000;

struct StatementDeleter {
  void operator()(sqlite3_stmt* statement) const { sqlite3_finalize(statement); }
};
using Statement = std::unique_ptr<sqlite3_stmt, StatementDeleter>;

std::string_view SqlType(catalog::FieldType type) {
  switch (type) {
    case catalog::FieldType::FIELD_TYPE_INTEGER:
    case catalog::FieldType::FIELD_TYPE_BOOLEAN:
      return "INTEGER";
    case catalog::FieldType::FIELD_TYPE_NUMBER:
      return "REAL";
    default:
      return "TEXT";
  }
}

absl::Status Unavailable(const std::string& path, sqlite3* db) {
  return absl::UnavailableError(Cat("source ", path, ": ", sqlite3_errmsg(db)));
}

// Binds params[i] to placeholder ?i+1. The statement must not outlive `params`.
absl::Status Bind(sqlite3_stmt* statement, const std::vector<filters::Literal>& params) {
  for (size_t i = 0; i < params.size(); ++i) {
    const int index = static_cast<int>(i) + 1;
    const filters::Literal& param = params[i];
    int rc;
    if (const auto* text = std::get_if<std::string>(&param)) {
      rc = sqlite3_bind_text64(statement, index, text->data(), text->size(), SQLITE_STATIC,
                               SQLITE_UTF8);
    } else if (const auto* integer = std::get_if<int64_t>(&param)) {
      rc = sqlite3_bind_int64(statement, index, *integer);
    } else if (const auto* number = std::get_if<double>(&param)) {
      rc = sqlite3_bind_double(statement, index, *number);
    } else {
      rc = sqlite3_bind_int(statement, index, std::get<bool>(param) ? 1 : 0);
    }
    if (rc != SQLITE_OK) {
      return absl::InternalError(Cat("binding parameter ", index, ": ", sqlite3_errstr(rc)));
    }
  }
  return absl::OkStatus();
}

// Sets `cell` to column `column` of the current row, as `type`; reuses a string's buffer.
void ReadCell(sqlite3_stmt* statement, int column, catalog::FieldType type, Cell& cell) {
  if (sqlite3_column_type(statement, column) == SQLITE_NULL) {
    cell.emplace<std::monostate>();
    return;
  }
  switch (type) {
    case catalog::FieldType::FIELD_TYPE_INTEGER:
      cell.emplace<int64_t>(sqlite3_column_int64(statement, column));
      return;
    case catalog::FieldType::FIELD_TYPE_NUMBER:
      cell.emplace<double>(sqlite3_column_double(statement, column));
      return;
    case catalog::FieldType::FIELD_TYPE_BOOLEAN:
      cell.emplace<bool>(sqlite3_column_int64(statement, column) != 0);
      return;
    default: {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, column));
      const int size = sqlite3_column_bytes(statement, column);
      std::string* value = std::get_if<std::string>(&cell);
      if (value == nullptr) value = &cell.emplace<std::string>();
      value->assign(text == nullptr ? "" : text, text == nullptr ? 0 : size);
      return;
    }
  }
}

}  // namespace

std::string SqliteSchema(const catalog::Entity& entity) {
  std::string sql = Cat("CREATE TABLE \"", entity.table, "\" (");
  bool has_account_id = false;
  for (size_t i = 0; i < entity.fields.size(); ++i) {
    const catalog::Field& field = entity.fields[i];
    if (i > 0) sql += ", ";
    Append(&sql, "\"", field.name, "\" ", SqlType(field.type));
    if (field.name == "id") sql += " PRIMARY KEY";
    if (field.name == "account_id") has_account_id = true;
  }
  sql += ");";
  if (has_account_id) {
    Append(&sql, "\nCREATE INDEX \"", entity.table, "_account_id\" ON \"", entity.table,
           "\" (\"account_id\");");
  }
  return sql;
}

absl::StatusOr<std::unique_ptr<SqliteSource>> SqliteSource::Open(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) {
    const int error = errno;
    const std::string reason = std::strerror(error);
    if (error == ENOENT) {
      return absl::NotFoundError(Cat("source ", path, ": ", reason));
    }
    return absl::UnavailableError(Cat("source ", path, ": ", reason));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(Cat("source ", path, ": not a regular file"));
  }

  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  // From here on the source owns `db` (sqlite3_open_v2 returns a handle even on failure).
  std::unique_ptr<SqliteSource> source(new SqliteSource(db, path));
  if (rc != SQLITE_OK) {
    if (db == nullptr) {
      return absl::UnavailableError(Cat("source ", path, ": ", sqlite3_errstr(rc)));
    }
    return Unavailable(path, db);
  }
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  // A double-quoted name that is no column must be an error, not SQLite's legacy fallback to a
  // string literal (which would make "country" = ?1 compare the text 'country').
  sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, 0, nullptr);

  // Reading the schema is the first access to the file: it tells a database from other files.
  sqlite3_stmt* raw = nullptr;
  int step = sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema", -1, &raw, nullptr);
  Statement probe(raw);
  if (step == SQLITE_OK) step = sqlite3_step(probe.get());
  if (step != SQLITE_ROW) {
    if ((sqlite3_errcode(db) & 0xff) == SQLITE_NOTADB) {
      return absl::FailedPreconditionError(Cat("source ", path, ": ", sqlite3_errmsg(db)));
    }
    return Unavailable(path, db);
  }
  return source;
}

SqliteSource::~SqliteSource() {
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

absl::Status SqliteSource::Scan(const catalog::Entity& entity,
                                const std::vector<std::string>& fields,
                                const filters::Condition& condition,
                                const std::function<bool(const Row&)>& row) {
  EXPORTD_ASSIGN_OR_RETURN(const SqlQuery query, CompileQuery(entity, fields, condition));
  std::vector<catalog::FieldType> types;
  types.reserve(fields.size());
  // CompileQuery accepted every name, so each is in the catalog.
  for (const std::string& name : fields) types.push_back(catalog::FindField(entity, name)->type);

  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_, query.sql.c_str(), static_cast<int>(query.sql.size()), &raw,
                         nullptr) != SQLITE_OK) {
    return Unavailable(path_, db_);
  }
  Statement statement(raw);
  EXPORTD_RETURN_IF_ERROR(Bind(statement.get(), query.params));

  Row cells(fields.size());
  while (true) {
    const int rc = sqlite3_step(statement.get());
    if (rc == SQLITE_DONE) return absl::OkStatus();
    if (rc != SQLITE_ROW) return Unavailable(path_, db_);
    for (size_t i = 0; i < types.size(); ++i) {
      ReadCell(statement.get(), static_cast<int>(i), types[i], cells[i]);
    }
    if (!row(cells)) return absl::OkStatus();
  }
}

absl::StatusOr<int64_t> SqliteSource::Count(const catalog::Entity& entity,
                                            const filters::Condition& condition) {
  EXPORTD_ASSIGN_OR_RETURN(const SqlQuery query, CompileQuery(entity, {"id"}, condition));
  // Counting needs no order: drop the ORDER BY, which would sort when an index finds the rows.
  std::string_view select = query.sql;
  constexpr std::string_view kOrderById = " ORDER BY \"id\"";
  if (select.ends_with(kOrderById)) select.remove_suffix(kOrderById.size());
  const std::string sql = Cat("SELECT count(*) FROM (", select, ")");
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &raw, nullptr) !=
      SQLITE_OK) {
    return Unavailable(path_, db_);
  }
  Statement statement(raw);
  EXPORTD_RETURN_IF_ERROR(Bind(statement.get(), query.params));
  if (sqlite3_step(statement.get()) != SQLITE_ROW) return Unavailable(path_, db_);
  return sqlite3_column_int64(statement.get(), 0);
}

}  // namespace exportd
