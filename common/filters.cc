#include "common/filters.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "common/status_macros.h"
#include "common/str_cat.h"

namespace exportd::filters {
namespace {

using catalog::Entity;
using catalog::Field;
using catalog::FieldType;
using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

// Deeper any_of / all_of nesting is refused. The server already refuses filters nested more
// than 8 levels (docs/filters.md); this bounds the recursion for any other caller.
constexpr int kMaxGroupDepth = 32;

// Integers arrive as JSON numbers (doubles); beyond 2^53 a double no longer names one integer.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

constexpr std::string_view kAnyOf = "any_of";
constexpr std::string_view kAllOf = "all_of";

struct OpEntry {
  std::string_view name;
  Op op;
};

constexpr OpEntry kOps[] = {
    {"eq", Op::kEq},
    {"ne", Op::kNe},
    {"lt", Op::kLt},
    {"lte", Op::kLte},
    {"gt", Op::kGt},
    {"gte", Op::kGte},
    {"in", Op::kIn},
    {"not_in", Op::kNotIn},
    {"contains", Op::kContains},
    {"starts_with", Op::kStartsWith},
    {"is_null", Op::kIsNull},
    {"between", Op::kBetween},
};

constexpr std::string_view kOpList =
    "eq, ne, lt, lte, gt, gte, in, not_in, contains, starts_with, is_null, between";

const OpEntry* FindOp(std::string_view name) {
  for (const OpEntry& op : kOps) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

bool IsIdentifier(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// `text` quoted and escaped for an error message, cut after about 40 bytes (on a UTF-8
// character boundary).
std::string Quote(std::string_view text) {
  size_t end = 40;
  const bool cut = text.size() > end;
  if (cut) {
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xc0) == 0x80) --end;
    text = text.substr(0, end);
  }
  return Cat("\"", absl::Utf8SafeCHexEscape(absl::string_view(text.data(), text.size())),
             cut ? "...\"" : "\"");
}

// `path` extended by an object key: `filters.country`, or `filters["bad key"]`.
std::string KeyPath(const std::string& path, std::string_view key) {
  if (IsIdentifier(key) && key.size() <= 64) return Cat(path, ".", key);
  return Cat(path, "[", Quote(key), "]");
}

std::string IndexPath(const std::string& path, int index) { return Cat(path, "[", index, "]"); }

std::string NumberText(double number) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), number);
  return std::string(buffer, result.ptr);
}

// What a value is, for "expects ..., got <this>".
std::string Describe(const Value& value) {
  switch (value.kind_case()) {
    case Value::kNullValue:
      return "null";
    case Value::kBoolValue:
      return value.bool_value() ? "true" : "false";
    case Value::kNumberValue:
      return NumberText(value.number_value());
    case Value::kStringValue:
      return Quote(value.string_value());
    case Value::kListValue:
      return "a list";
    case Value::kStructValue:
      return "an object";
    default:
      return "no value";
  }
}

std::string DescribeLiteral(const Literal& literal) {
  if (const auto* text = std::get_if<std::string>(&literal)) return Quote(*text);
  if (const auto* integer = std::get_if<int64_t>(&literal)) return Cat(*integer);
  if (const auto* number = std::get_if<double>(&literal)) return NumberText(*number);
  return std::get<bool>(literal) ? "true" : "false";
}

absl::Status Invalid(const std::string& path, std::string_view reason) {
  return absl::InvalidArgumentError(Cat(path, ": ", reason));
}

// Parses `digits` (exactly `count` decimal digits) at text[*pos]; advances *pos.
std::optional<int> Digits(std::string_view text, size_t* pos, size_t count) {
  if (*pos + count > text.size()) return std::nullopt;
  int value = 0;
  for (size_t i = 0; i < count; ++i) {
    const char c = text[*pos + i];
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  *pos += count;
  return value;
}

bool Expect(std::string_view text, size_t* pos, std::string_view chars) {
  if (*pos >= text.size() || chars.find(text[*pos]) == std::string_view::npos) return false;
  ++*pos;
  return true;
}

enum class TimestampError { kSyntax, kFraction };

// RFC 3339 ("2025-01-31T09:30:00+02:00", "...Z", fraction allowed when it is zero) or a bare
// date ("2025-01-31", midnight UTC), normalised to UTC "YYYY-MM-DDTHH:MM:SSZ".
std::variant<std::string, TimestampError> NormalizeTimestamp(std::string_view text) {
  size_t pos = 0;
  const auto year = Digits(text, &pos, 4);
  if (!year || !Expect(text, &pos, "-")) return TimestampError::kSyntax;
  const auto month = Digits(text, &pos, 2);
  if (!month || !Expect(text, &pos, "-")) return TimestampError::kSyntax;
  const auto day = Digits(text, &pos, 2);
  if (!day) return TimestampError::kSyntax;
  int hour = 0, minute = 0, second = 0, offset_minutes = 0;
  bool nonzero_fraction = false;
  if (pos < text.size()) {
    if (!Expect(text, &pos, "Tt")) return TimestampError::kSyntax;
    const auto h = Digits(text, &pos, 2);
    if (!h || !Expect(text, &pos, ":")) return TimestampError::kSyntax;
    const auto m = Digits(text, &pos, 2);
    if (!m || !Expect(text, &pos, ":")) return TimestampError::kSyntax;
    const auto s = Digits(text, &pos, 2);
    if (!s) return TimestampError::kSyntax;
    hour = *h;
    minute = *m;
    second = *s;
    if (pos < text.size() && text[pos] == '.') {
      ++pos;
      const size_t start = pos;
      while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
        if (text[pos] != '0') nonzero_fraction = true;
        ++pos;
      }
      if (pos == start) return TimestampError::kSyntax;
    }
    if (Expect(text, &pos, "Zz")) {
      offset_minutes = 0;
    } else {
      if (pos >= text.size() || (text[pos] != '+' && text[pos] != '-')) {
        return TimestampError::kSyntax;
      }
      const int sign = text[pos] == '-' ? -1 : 1;
      ++pos;
      const auto oh = Digits(text, &pos, 2);
      if (!oh || !Expect(text, &pos, ":")) return TimestampError::kSyntax;
      const auto om = Digits(text, &pos, 2);
      if (!om || *oh > 23 || *om > 59) return TimestampError::kSyntax;
      offset_minutes = sign * (*oh * 60 + *om);
    }
    if (pos != text.size()) return TimestampError::kSyntax;
  }
  // Reject fields that absl::CivilSecond would silently normalise (Feb 30, 24:00, leap seconds).
  const absl::CivilSecond local(*year, *month, *day, hour, minute, second);
  if (local.year() != *year || local.month() != *month || local.day() != *day ||
      local.hour() != hour || local.minute() != minute || local.second() != second) {
    return TimestampError::kSyntax;
  }
  const absl::CivilSecond utc = local - int64_t{offset_minutes} * 60;
  if (utc.year() < 0 || utc.year() > 9999) return TimestampError::kSyntax;
  if (nonzero_fraction) return TimestampError::kFraction;
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%04d-%02d-%02dT%02d:%02d:%02dZ",
                static_cast<int>(utc.year()), utc.month(), utc.day(), utc.hour(), utc.minute(),
                utc.second());
  return std::string(buffer);
}

bool OpAppliesTo(Op op, FieldType type) {
  switch (op) {
    case Op::kEq:
    case Op::kNe:
    case Op::kIsNull:
      return true;
    case Op::kIn:
    case Op::kNotIn:
      return type != catalog::FieldType::FIELD_TYPE_BOOLEAN;
    case Op::kContains:
    case Op::kStartsWith:
      return type == catalog::FieldType::FIELD_TYPE_STRING;
    case Op::kLt:
    case Op::kLte:
    case Op::kGt:
    case Op::kGte:
    case Op::kBetween:
      return type != catalog::FieldType::FIELD_TYPE_BOOLEAN;
  }
  return false;
}

std::string_view OpName(Op op) {
  for (const auto& entry : kOps) {
    if (entry.op == op) return entry.name;
  }
  return "?";
}

// The reason an operator (`what`: its name, or "a list (in)") does not apply to a field type.
std::string NotApplicable(std::string_view what, Op op, FieldType type) {
  std::string_view applies;
  switch (op) {
    case Op::kContains:
    case Op::kStartsWith:
      applies = "string fields";
      break;
    case Op::kIn:
    case Op::kNotIn:
      applies = "string, integer, number and timestamp fields";
      break;
    default:
      applies = "integer, number, timestamp and string fields";
      break;
  }
  return Cat(what, " does not apply to ", catalog::FieldTypeName(type), " fields (only to ",
             applies, ")");
}

Condition Leaf(const Field& field, Op op, std::vector<Literal> values) {
  Condition leaf;
  leaf.kind = Condition::Kind::kLeaf;
  leaf.field = &field;
  leaf.op = op;
  leaf.values = std::move(values);
  return leaf;
}

// Adds `child` to the group `parent`, merging a child group of the same kind into it.
void AddChild(Condition& parent, Condition child) {
  if (child.kind == parent.kind) {
    for (Condition& grandchild : child.children) parent.children.push_back(std::move(grandchild));
  } else {
    parent.children.push_back(std::move(child));
  }
}

// A group of one condition is that condition.
Condition Simplify(Condition group) {
  if (group.kind != Condition::Kind::kLeaf && group.children.size() == 1) {
    Condition only = std::move(group.children.front());
    return only;
  }
  return group;
}

// Sorted keys, so that errors and the compiled SQL do not depend on map iteration order.
std::vector<const std::string*> SortedKeys(const Struct& object) {
  std::vector<const std::string*> keys;
  keys.reserve(object.fields_size());
  for (const auto& entry : object.fields()) keys.push_back(&entry.first);
  std::sort(keys.begin(), keys.end(),
            [](const std::string* a, const std::string* b) { return *a < *b; });
  return keys;
}

bool LiteralLess(const Literal& a, const Literal& b) {
  if (const auto* x = std::get_if<std::string>(&a)) return *x < std::get<std::string>(b);
  if (const auto* x = std::get_if<int64_t>(&a)) return *x < std::get<int64_t>(b);
  if (const auto* x = std::get_if<double>(&a)) return *x < std::get<double>(b);
  return std::get<bool>(a) < std::get<bool>(b);
}

class Parser {
 public:
  explicit Parser(const Entity& entity) : entity_(entity) {}

  // A filter object: its keys ANDed, as a kAll group.
  absl::StatusOr<Condition> ParseObject(const Struct& object, const std::string& path,
                                        int depth) const {
    if (depth > kMaxGroupDepth) {
      return Invalid(path,
                     Cat("any_of / all_of nested more than ", kMaxGroupDepth, " levels deep"));
    }
    Condition all;
    all.kind = Condition::Kind::kAll;
    for (const std::string* key : SortedKeys(object)) {
      const Value& value = object.fields().at(*key);
      const std::string key_path = KeyPath(path, *key);
      if (*key == kAnyOf || *key == kAllOf) {
        EXPORTD_ASSIGN_OR_RETURN(
            Condition group,
            ParseGroup(value, *key == kAnyOf ? Condition::Kind::kAny : Condition::Kind::kAll,
                       key_path, depth));
        AddChild(all, std::move(group));
        continue;
      }
      const Field* field = catalog::FindField(entity_, *key);
      if (field == nullptr) {
        if (FindOp(*key) != nullptr) {
          return Invalid(key_path, Cat("\"", *key,
                                       "\" is an operator, not a field; write "
                                       "{\"<field>\": {\"",
                                       *key, "\": <value>}}"));
        }
        return Invalid(key_path, Cat("unknown field for ", entity_.table));
      }
      EXPORTD_ASSIGN_OR_RETURN(Condition condition, ParseField(*field, value, key_path));
      AddChild(all, std::move(condition));
    }
    return all;
  }

 private:
  // any_of / all_of: a non-empty list of non-empty filter objects.
  absl::StatusOr<Condition> ParseGroup(const Value& value, Condition::Kind kind,
                                       const std::string& path, int depth) const {
    constexpr std::string_view kExpects = "expects a non-empty list of filter objects, got ";
    if (!value.has_list_value()) return Invalid(path, Cat(kExpects, Describe(value)));
    const ListValue& list = value.list_value();
    if (list.values_size() == 0) return Invalid(path, Cat(kExpects, "an empty list"));
    Condition group;
    group.kind = kind;
    for (int i = 0; i < list.values_size(); ++i) {
      const Value& element = list.values(i);
      const std::string element_path = IndexPath(path, i);
      if (!element.has_struct_value()) {
        return Invalid(element_path, Cat("expects a filter object, got ", Describe(element)));
      }
      if (element.struct_value().fields_size() == 0) {
        return Invalid(element_path, "a filter object in any_of / all_of must not be empty");
      }
      EXPORTD_ASSIGN_OR_RETURN(Condition child,
                               ParseObject(element.struct_value(), element_path, depth + 1));
      AddChild(group, Simplify(std::move(child)));
    }
    return Simplify(std::move(group));
  }

  // The value of a field key: a scalar (equals; null = is null), a list (in) or an object of
  // operators (ANDed).
  absl::StatusOr<Condition> ParseField(const Field& field, const Value& value,
                                       const std::string& path) const {
    switch (value.kind_case()) {
      case Value::kNullValue:
        return Leaf(field, Op::kIsNull, {true});
      case Value::kListValue: {
        if (!OpAppliesTo(Op::kIn, field.type)) {
          return Invalid(path, NotApplicable("a list (in)", Op::kIn, field.type));
        }
        EXPORTD_ASSIGN_OR_RETURN(std::vector<Literal> values, ParseList(field, value, path));
        return Leaf(field, Op::kIn, std::move(values));
      }
      case Value::kStructValue: {
        const Struct& ops = value.struct_value();
        if (ops.fields_size() == 0) {
          return Invalid(path,
                         Cat("an operator object must not be empty (operators: ", kOpList, ")"));
        }
        Condition all;
        all.kind = Condition::Kind::kAll;
        for (const std::string* key : SortedKeys(ops)) {
          const std::string op_path = KeyPath(path, *key);
          const OpEntry* op = FindOp(*key);
          if (op == nullptr) {
            std::string hint;
            if (*key == kAnyOf || *key == kAllOf) {
              hint = "; any_of and all_of combine filter objects and belong where field names do";
            } else if (catalog::FindField(entity_, *key) != nullptr) {
              hint = Cat("; \"", *key, "\" is a field, not an operator");
            }
            return Invalid(op_path, Cat("unknown operator (one of ", kOpList, ")", hint));
          }
          EXPORTD_ASSIGN_OR_RETURN(Condition leaf,
                                   ParseOp(field, op->op, ops.fields().at(*key), op_path));
          AddChild(all, std::move(leaf));
        }
        return Simplify(std::move(all));
      }
      default: {
        EXPORTD_ASSIGN_OR_RETURN(Literal literal, ParseLiteral(field, value, path));
        return Leaf(field, Op::kEq, {std::move(literal)});
      }
    }
  }

  absl::StatusOr<Condition> ParseOp(const Field& field, Op op, const Value& value,
                                    const std::string& path) const {
    if (!OpAppliesTo(op, field.type)) {
      return Invalid(path, NotApplicable(OpName(op), op, field.type));
    }
    switch (op) {
      case Op::kEq:
      case Op::kNe:
        if (value.has_null_value()) return Leaf(field, Op::kIsNull, {op == Op::kEq});
        [[fallthrough]];
      case Op::kLt:
      case Op::kLte:
      case Op::kGt:
      case Op::kGte:
      case Op::kContains:
      case Op::kStartsWith: {
        EXPORTD_ASSIGN_OR_RETURN(Literal literal, ParseLiteral(field, value, path));
        return Leaf(field, op, {std::move(literal)});
      }
      case Op::kIn:
      case Op::kNotIn: {
        EXPORTD_ASSIGN_OR_RETURN(std::vector<Literal> values, ParseList(field, value, path));
        return Leaf(field, op, std::move(values));
      }
      case Op::kIsNull:
        if (!value.has_bool_value()) {
          return Invalid(path, Cat("expects true or false, got ", Describe(value)));
        }
        return Leaf(field, op, {value.bool_value()});
      case Op::kBetween: {
        if (!value.has_list_value() || value.list_value().values_size() != 2) {
          const std::string got = value.has_list_value()
                                      ? Cat("a list of ", value.list_value().values_size())
                                      : Describe(value);
          return Invalid(path, Cat("expects a list of two values [low, high], got ", got));
        }
        std::vector<Literal> bounds;
        for (int i = 0; i < 2; ++i) {
          EXPORTD_ASSIGN_OR_RETURN(
              Literal bound, ParseLiteral(field, value.list_value().values(i), IndexPath(path, i)));
          bounds.push_back(std::move(bound));
        }
        if (LiteralLess(bounds[1], bounds[0])) {
          return Invalid(path, Cat("low ", DescribeLiteral(bounds[0]), " is greater than high ",
                                   DescribeLiteral(bounds[1])));
        }
        return Leaf(field, op, std::move(bounds));
      }
    }
    return Invalid(path, "unknown operator");
  }

  absl::StatusOr<std::vector<Literal>> ParseList(const Field& field, const Value& value,
                                                 const std::string& path) const {
    if (!value.has_list_value()) {
      return Invalid(path, Cat("expects a list, got ", Describe(value)));
    }
    const ListValue& list = value.list_value();
    if (list.values_size() == 0) {
      return Invalid(path, "expects a non-empty list (an empty list would match nothing)");
    }
    std::vector<Literal> values;
    values.reserve(list.values_size());
    for (int i = 0; i < list.values_size(); ++i) {
      const Value& element = list.values(i);
      const std::string element_path = IndexPath(path, i);
      if (element.has_null_value()) {
        return Invalid(element_path,
                       "null is not allowed in a list; combine the list with "
                       "{\"is_null\": true} in an any_of");
      }
      EXPORTD_ASSIGN_OR_RETURN(Literal literal, ParseLiteral(field, element, element_path));
      values.push_back(std::move(literal));
    }
    return values;
  }

  // One value converted to the field's type.
  absl::StatusOr<Literal> ParseLiteral(const Field& field, const Value& value,
                                       const std::string& path) const {
    switch (field.type) {
      case catalog::FieldType::FIELD_TYPE_STRING:
        if (value.has_string_value()) return Literal(value.string_value());
        return Invalid(path, Cat("expects a string, got ", Describe(value)));
      case catalog::FieldType::FIELD_TYPE_INTEGER: {
        if (!value.has_number_value()) {
          return Invalid(path, Cat("expects an integer, got ", Describe(value)));
        }
        const double number = value.number_value();
        if (!std::isfinite(number) || number != std::trunc(number)) {
          return Invalid(path, Cat("expects an integer, got ", Describe(value)));
        }
        if (std::fabs(number) > kMaxExactInteger) {
          return Invalid(path, Cat("expects an integer between -9007199254740992 and "
                                   "9007199254740992 (2^53), got ",
                                   Describe(value)));
        }
        return Literal(static_cast<int64_t>(number));
      }
      case catalog::FieldType::FIELD_TYPE_NUMBER:
        if (value.has_number_value() && std::isfinite(value.number_value())) {
          return Literal(value.number_value());
        }
        return Invalid(path, Cat("expects a number, got ", Describe(value)));
      case catalog::FieldType::FIELD_TYPE_BOOLEAN:
        if (value.has_bool_value()) return Literal(value.bool_value());
        return Invalid(path, Cat("expects true or false, got ", Describe(value)));
      case catalog::FieldType::FIELD_TYPE_TIMESTAMP: {
        constexpr std::string_view kExpects =
            "expects an RFC 3339 timestamp (2025-01-31T09:30:00Z, any offset) or a date "
            "(2025-01-31), got ";
        if (!value.has_string_value()) {
          return Invalid(path, Cat(kExpects, Describe(value)));
        }
        auto normalized = NormalizeTimestamp(value.string_value());
        if (auto* text = std::get_if<std::string>(&normalized)) return Literal(std::move(*text));
        if (std::get<TimestampError>(normalized) == TimestampError::kFraction) {
          return Invalid(path, Cat("timestamps have whole seconds; a fraction of a second "
                                   "must be zero, got ",
                                   Describe(value)));
        }
        return Invalid(path, Cat(kExpects, Describe(value)));
      }
      default:
        return Invalid(path, Cat("field of unsupported type ", catalog::FieldTypeName(field.type)));
    }
  }

  const Entity& entity_;
};

}  // namespace

absl::StatusOr<Condition> Parse(const google::protobuf::Struct& filters,
                                const catalog::Entity& entity) {
  return Parser(entity).ParseObject(filters, "filters", 0);
}

}  // namespace exportd::filters
