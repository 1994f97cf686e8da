// Fuzzes the filter grammar (common/filters.h) and its compilation to SQL (worker/sql_query.h).
//
// Input: JSON text; an object becomes the google.protobuf.Struct of ExportJob.filters (numbers
// as doubles, as a client's JSON arrives) and is parsed against every entity's catalog.
//
// Invariants:
//  - Parse fails only with INVALID_ARGUMENT whose message starts with "filters";
//  - a parsed tree is well-formed: leaves name the catalog's own fields, carry the operand
//    count and types their operator needs (between: low <= high), groups are non-empty;
//  - a parsed filter always compiles (CompileQuery with every field of the entity);
//  - the SQL text holds only the catalog's quoted column and table names, a fixed set of
//    keywords and functions, punctuation and ?N placeholders: no quote character, no literal
//    other than 0 and 1, so nothing from the input is ever in it;
//  - the placeholders are exactly ?1..?N for N parameters, and N is the number of operands
//    in the tree;
//  - SQLite prepares the statement against the entity's table, counts N parameters, and runs
//    it with them bound;
//  - the result does not depend on the Struct's map order (serialise, parse, compile again:
//    the same SQL and parameters).
#include <sqlite3.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "common/catalog.h"
#include "common/filters.h"
#include "tests/fuzz/fuzz_support.h"
#include "worker/sql_query.h"

namespace {

using exportd::filters::Condition;
using exportd::filters::Literal;
using exportd::filters::Op;
namespace catalog = exportd::catalog;

sqlite3* g_db = nullptr;

std::string Quoted(std::string_view name) { return "\"" + std::string(name) + "\""; }

bool Fits(const Literal& literal, catalog::FieldType type) {
  switch (type) {
    case exportjobs::v1::FIELD_TYPE_STRING:
    case exportjobs::v1::FIELD_TYPE_TIMESTAMP:
      return std::holds_alternative<std::string>(literal);
    case exportjobs::v1::FIELD_TYPE_INTEGER:
      return std::holds_alternative<int64_t>(literal);
    case exportjobs::v1::FIELD_TYPE_NUMBER:
      return std::holds_alternative<double>(literal);
    case exportjobs::v1::FIELD_TYPE_BOOLEAN:
      return std::holds_alternative<bool>(literal);
    default:
      return false;
  }
}

// Checks a parsed tree and returns the number of SQL parameters it needs.
size_t CheckTree(const Condition& condition, const catalog::Entity& entity, int depth) {
  FUZZ_CHECK(depth < 200, "tree deeper than the grammar allows");
  if (condition.kind != Condition::Kind::kLeaf) {
    // Only the top level may be an empty group (no filters).
    FUZZ_CHECK(depth == 0 || !condition.children.empty(), "empty nested group");
    size_t params = 0;
    for (const Condition& child : condition.children) {
      params += CheckTree(child, entity, depth + 1);
    }
    return params;
  }
  FUZZ_CHECK(condition.children.empty(), "leaf with children");
  FUZZ_CHECK(condition.field != nullptr &&
                 catalog::FindField(entity, condition.field->name) == condition.field,
             "leaf field not the catalog's own entry");
  const size_t count = condition.values.size();
  switch (condition.op) {
    case Op::kIsNull:
      FUZZ_CHECK(count == 1 && std::holds_alternative<bool>(condition.values[0]), "is_null");
      return 0;
    case Op::kIn:
    case Op::kNotIn:
      FUZZ_CHECK(count >= 1, "empty in list", condition.field->name);
      break;
    case Op::kBetween:
      FUZZ_CHECK(count == 2, "between", condition.field->name);
      FUZZ_CHECK(!(condition.values[1] < condition.values[0]), "between low > high",
                 condition.field->name);
      break;
    default:
      FUZZ_CHECK(count == 1, "operand count", condition.field->name);
      break;
  }
  for (const Literal& value : condition.values) {
    FUZZ_CHECK(Fits(value, condition.field->type), "operand type", condition.field->name);
  }
  return count;
}

// Checks that the SQL holds nothing but known tokens; returns the placeholder numbers used.
std::set<int64_t> CheckSqlTokens(const std::string& sql, const catalog::Entity& entity) {
  static const std::set<std::string_view> kWords = {
      "SELECT", "FROM", "WHERE", "ORDER",   "BY",    "AND",    "OR",     "IS",
      "NOT",    "NULL", "IN",    "BETWEEN", "instr", "substr", "length",
  };
  std::set<std::string> identifiers = {std::string(entity.table)};
  for (const catalog::Field& field : entity.fields) identifiers.insert(std::string(field.name));

  FUZZ_CHECK(absl::StartsWith(sql, "SELECT ") && absl::EndsWith(sql, " ORDER BY \"id\""), "sql",
             sql);
  FUZZ_CHECK(sql.find('\'') == std::string::npos, "quote in sql", sql);
  std::set<int64_t> placeholders;
  size_t i = 0;
  const auto is_alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  while (i < sql.size()) {
    const char c = sql[i];
    if (c == ' ') {
      ++i;
    } else if (c == '"') {
      const size_t close = sql.find('"', i + 1);
      FUZZ_CHECK(close != std::string::npos, "unterminated identifier", sql);
      const std::string name = sql.substr(i + 1, close - i - 1);
      FUZZ_CHECK(identifiers.count(name) == 1, "identifier not in the catalog", sql);
      i = close + 1;
    } else if (c == '?') {
      size_t end = i + 1;
      while (end < sql.size() && is_digit(sql[end])) ++end;
      FUZZ_CHECK(end > i + 1 && end - i - 1 <= 9, "bad placeholder", sql);
      placeholders.insert(std::stoll(sql.substr(i + 1, end - i - 1)));
      i = end;
    } else if (is_alpha(c) || c == '_') {
      size_t end = i;
      while (end < sql.size() && (is_alpha(sql[end]) || sql[end] == '_')) ++end;
      FUZZ_CHECK(kWords.count(std::string_view(sql).substr(i, end - i)) == 1, "unknown word", sql);
      i = end;
    } else if (is_digit(c)) {
      size_t end = i;
      while (end < sql.size() && is_digit(sql[end])) ++end;
      const std::string_view number = std::string_view(sql).substr(i, end - i);
      FUZZ_CHECK(number == "0" || number == "1", "number literal in sql", sql);
      i = end;
    } else {
      FUZZ_CHECK(std::string_view("(),=<>").find(c) != std::string_view::npos,
                 "unexpected character in sql", sql);
      ++i;
    }
  }
  return placeholders;
}

void CheckSqlite(const exportd::SqlQuery& query) {
  sqlite3_stmt* statement = nullptr;
  const int prepared = sqlite3_prepare_v2(g_db, query.sql.c_str(),
                                          static_cast<int>(query.sql.size()), &statement, nullptr);
  FUZZ_CHECK(prepared == SQLITE_OK, sqlite3_errmsg(g_db), query.sql);
  FUZZ_CHECK(sqlite3_bind_parameter_count(statement) == static_cast<int>(query.params.size()),
             "parameter count", query.sql);
  for (size_t i = 0; i < query.params.size(); ++i) {
    const int index = static_cast<int>(i + 1);
    const Literal& param = query.params[i];
    int bound = SQLITE_OK;
    if (const auto* text = std::get_if<std::string>(&param)) {
      bound = sqlite3_bind_text(statement, index, text->data(), static_cast<int>(text->size()),
                                SQLITE_TRANSIENT);
    } else if (const auto* integer = std::get_if<int64_t>(&param)) {
      bound = sqlite3_bind_int64(statement, index, *integer);
    } else if (const auto* number = std::get_if<double>(&param)) {
      bound = sqlite3_bind_double(statement, index, *number);
    } else {
      bound = sqlite3_bind_int(statement, index, std::get<bool>(param) ? 1 : 0);
    }
    FUZZ_CHECK(bound == SQLITE_OK, "bind", query.sql);
  }
  const int stepped = sqlite3_step(statement);
  FUZZ_CHECK(stepped == SQLITE_DONE, sqlite3_errmsg(g_db), query.sql);
  sqlite3_finalize(statement);
}

std::vector<std::string> AllFields(const catalog::Entity& entity) {
  std::vector<std::string> fields;
  for (const catalog::Field& field : entity.fields) fields.emplace_back(field.name);
  return fields;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  exportd::fuzz::SilenceProtobufLogs();
  // One empty table per entity, one column per catalog field: enough for SQLite to check the
  // statement's names and parameters.
  if (sqlite3_open(":memory:", &g_db) != SQLITE_OK) std::abort();
  for (const catalog::Entity& entity : catalog::Entities()) {
    std::string ddl = "CREATE TABLE " + Quoted(entity.table) + " (";
    for (size_t i = 0; i < entity.fields.size(); ++i) {
      if (i > 0) ddl += ", ";
      ddl += Quoted(entity.fields[i].name);
    }
    ddl += ")";
    if (sqlite3_exec(g_db, ddl.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::optional<google::protobuf::Struct> filters = exportd::fuzz::JsonToStruct(text);
  if (!filters.has_value()) return 0;

  // The same filters after a serialisation round trip: a Struct whose map iterates in another
  // order.
  google::protobuf::Struct reparsed;
  FUZZ_CHECK(reparsed.ParseFromString(filters->SerializeAsString()), "Struct round trip");

  for (const catalog::Entity& entity : catalog::Entities()) {
    absl::StatusOr<Condition> condition = exportd::filters::Parse(*filters, entity);
    absl::StatusOr<Condition> again = exportd::filters::Parse(reparsed, entity);
    if (!condition.ok()) {
      FUZZ_CHECK(condition.status().code() == absl::StatusCode::kInvalidArgument,
                 condition.status().ToString());
      FUZZ_CHECK(absl::StartsWith(condition.status().message(), "filters"),
                 condition.status().ToString());
      FUZZ_CHECK(again.status() == condition.status(), "the error depends on map order",
                 condition.status().ToString());
      continue;
    }
    FUZZ_CHECK(condition->kind == Condition::Kind::kAll, "top level is not an AND group");
    const size_t operands = CheckTree(*condition, entity, 0);

    absl::StatusOr<exportd::SqlQuery> query =
        exportd::CompileQuery(entity, AllFields(entity), *condition);
    FUZZ_CHECK(query.ok(), "a parsed filter does not compile", query.status().ToString());
    const std::set<int64_t> placeholders = CheckSqlTokens(query->sql, entity);
    FUZZ_CHECK(query->params.size() == operands, "parameters != operands", query->sql);
    FUZZ_CHECK(placeholders.size() == query->params.size() &&
                   (placeholders.empty() ||
                    (*placeholders.begin() == 1 &&
                     *placeholders.rbegin() == static_cast<int64_t>(query->params.size()))),
               "placeholders are not ?1..?N", query->sql);
    CheckSqlite(*query);

    FUZZ_CHECK(again.ok(), "parse depends on map order", again.status().ToString());
    absl::StatusOr<exportd::SqlQuery> query_again =
        exportd::CompileQuery(entity, AllFields(entity), *again);
    FUZZ_CHECK(
        query_again.ok() && query_again->sql == query->sql && query_again->params == query->params,
        "compiled SQL depends on map order", query->sql);
  }
  return 0;
}
