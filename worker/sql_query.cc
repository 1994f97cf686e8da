#include "worker/sql_query.h"

#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/str_cat.h"

namespace exportd {
namespace {

using filters::Condition;
using filters::Literal;
using filters::Op;

// An SQL identifier in double quotes. Only catalog names reach here; quoting (and doubling any
// quote) keeps even those from being read as keywords.
std::string QuoteIdentifier(std::string_view name) {
  std::string quoted = "\"";
  for (char c : name) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

// Whether `literal` has the representation filters::Parse gives the field's values.
bool LiteralFits(const Literal& literal, catalog::FieldType type) {
  switch (type) {
    case catalog::FieldType::FIELD_TYPE_STRING:
    case catalog::FieldType::FIELD_TYPE_TIMESTAMP:
      return std::holds_alternative<std::string>(literal);
    case catalog::FieldType::FIELD_TYPE_INTEGER:
      return std::holds_alternative<int64_t>(literal);
    case catalog::FieldType::FIELD_TYPE_NUMBER:
      return std::holds_alternative<double>(literal);
    case catalog::FieldType::FIELD_TYPE_BOOLEAN:
      return std::holds_alternative<bool>(literal);
    default:
      return false;
  }
}

class Compiler {
 public:
  explicit Compiler(const catalog::Entity& entity) : entity_(entity) {}

  // The SQL expression of `condition`; appends its values to params(). A group is put in
  // parentheses unless it is `top`.
  absl::StatusOr<std::string> Expression(const Condition& condition, bool top = false) {
    switch (condition.kind) {
      case Condition::Kind::kLeaf:
        return LeafExpression(condition);
      case Condition::Kind::kAll:
      case Condition::Kind::kAny: {
        const bool all = condition.kind == Condition::Kind::kAll;
        // An empty AND is true, an empty OR false.
        if (condition.children.empty()) return std::string(all ? "1" : "0");
        std::string sql = top ? "" : "(";
        for (size_t i = 0; i < condition.children.size(); ++i) {
          if (i > 0) sql += all ? " AND " : " OR ";
          EXPORTD_ASSIGN_OR_RETURN(std::string child, Expression(condition.children[i]));
          sql += child;
        }
        if (!top) sql += ")";
        return sql;
      }
    }
    return absl::InvalidArgumentError("filters: condition of unknown kind");
  }

  std::vector<Literal>& params() { return params_; }

 private:
  // "?N" for a new parameter holding `literal`.
  std::string Param(const Literal& literal) {
    params_.push_back(literal);
    return Cat("?", params_.size());
  }

  absl::StatusOr<std::string> LeafExpression(const Condition& leaf) {
    // The field must be the catalog's own entry, so its name is known text.
    if (leaf.field == nullptr || catalog::FindField(entity_, leaf.field->name) != leaf.field) {
      return absl::InvalidArgumentError(
          Cat("filters: condition on a field not in the catalog of ", entity_.table));
    }
    const std::string column = QuoteIdentifier(leaf.field->name);
    const std::string_view name = leaf.field->name;
    const auto count_is = [&](size_t n) -> absl::Status {
      if (leaf.values.size() != n) {
        return absl::InvalidArgumentError(
            Cat("filters.", name, ": expected ", n, " values, got ", leaf.values.size()));
      }
      return absl::OkStatus();
    };
    if (leaf.op == Op::kIsNull) {
      EXPORTD_RETURN_IF_ERROR(count_is(1));
      if (!std::holds_alternative<bool>(leaf.values[0])) {
        return absl::InvalidArgumentError(Cat("filters.", name, ".is_null: expects a boolean"));
      }
      return Cat(column, std::get<bool>(leaf.values[0]) ? " IS NULL" : " IS NOT NULL");
    }
    for (const Literal& value : leaf.values) {
      if (!LiteralFits(value, leaf.field->type)) {
        return absl::InvalidArgumentError(Cat("filters.", name,
                                              ": a value of the wrong type for a ",
                                              catalog::FieldTypeName(leaf.field->type), " field"));
      }
    }
    switch (leaf.op) {
      case Op::kEq:
        EXPORTD_RETURN_IF_ERROR(count_is(1));
        return Cat(column, " = ", Param(leaf.values[0]));
      case Op::kNe:
        // Null-safe: a record whose field is NULL is "not equal" too.
        EXPORTD_RETURN_IF_ERROR(count_is(1));
        return Cat(column, " IS NOT ", Param(leaf.values[0]));
      case Op::kLt:
        EXPORTD_RETURN_IF_ERROR(count_is(1));
        return Cat(column, " < ", Param(leaf.values[0]));
      case Op::kLte:
        EXPORTD_RETURN_IF_ERROR(count_is(1));
        return Cat(column, " <= ", Param(leaf.values[0]));
      case Op::kGt:
        EXPORTD_RETURN_IF_ERROR(count_is(1));
        return Cat(column, " > ", Param(leaf.values[0]));
      case Op::kGte:
        EXPORTD_RETURN_IF_ERROR(count_is(1));
        return Cat(column, " >= ", Param(leaf.values[0]));
      case Op::kIn:
      case Op::kNotIn: {
        if (leaf.values.empty()) {
          return absl::InvalidArgumentError(
              Cat("filters.", name, ": an in / not_in list must not be empty"));
        }
        std::string list;
        for (size_t i = 0; i < leaf.values.size(); ++i) {
          if (i > 0) list += ", ";
          list += Param(leaf.values[i]);
        }
        if (leaf.op == Op::kIn) return Cat(column, " IN (", list, ")");
        // Like ne, not_in matches a record whose field is NULL.
        return Cat("(", column, " IS NULL OR ", column, " NOT IN (", list, "))");
      }
      case Op::kContains: {
        // instr() compares bytes of the text exactly: no wildcards, case-sensitive.
        EXPORTD_RETURN_IF_ERROR(count_is(1));
        return Cat("instr(", column, ", ", Param(leaf.values[0]), ") > 0");
      }
      case Op::kStartsWith: {
        EXPORTD_RETURN_IF_ERROR(count_is(1));
        const std::string param = Param(leaf.values[0]);
        return Cat("substr(", column, ", 1, length(", param, ")) = ", param);
      }
      case Op::kBetween: {
        EXPORTD_RETURN_IF_ERROR(count_is(2));
        // Two statements: the order of function arguments is unspecified.
        const std::string low = Param(leaf.values[0]);
        const std::string high = Param(leaf.values[1]);
        return Cat("(", column, " BETWEEN ", low, " AND ", high, ")");
      }
      case Op::kIsNull:
        break;
    }
    return absl::InvalidArgumentError(Cat("filters.", name, ": unknown operator"));
  }

  const catalog::Entity& entity_;
  std::vector<Literal> params_;
};

}  // namespace

absl::StatusOr<SqlQuery> CompileQuery(const catalog::Entity& entity,
                                      const std::vector<std::string>& fields,
                                      const filters::Condition& condition) {
  if (fields.empty()) return absl::InvalidArgumentError("fields: no fields to export");
  std::string sql = "SELECT ";
  for (size_t i = 0; i < fields.size(); ++i) {
    const catalog::Field* field = catalog::FindField(entity, fields[i]);
    if (field == nullptr) {
      return absl::InvalidArgumentError(Cat("fields[", i, "]: unknown field for ", entity.table));
    }
    if (i > 0) sql += ", ";
    // The catalog's copy of the name, not the request's.
    sql += QuoteIdentifier(field->name);
  }
  Append(&sql, " FROM ", QuoteIdentifier(entity.table));

  Compiler compiler(entity);
  const bool match_all = condition.kind == Condition::Kind::kAll && condition.children.empty();
  if (!match_all) {
    EXPORTD_ASSIGN_OR_RETURN(std::string where, compiler.Expression(condition, /*top=*/true));
    Append(&sql, " WHERE ", where);
  }
  sql += " ORDER BY \"id\"";
  return SqlQuery{std::move(sql), std::move(compiler.params())};
}

}  // namespace exportd
