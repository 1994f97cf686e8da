// Filters: the grammar of ExportJob.filters (docs/filters.md), checked against the field
// catalog at create time and compiled by the worker into a parameterised SQL condition.
//
//   {"country": "DE",                                  -- equals
//    "industry": ["Software", "Fintech"],              -- in
//    "employee_count": {"gte": 100, "lt": 5000},       -- operators, ANDed
//    "any_of": [{"region": "EMEA"}, {"intent_score": {"gt": 80}}]}   -- OR group
//
// Thread safety: pure functions.
#pragma once

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "common/catalog.h"
#include "google/protobuf/struct.pb.h"

namespace exportd::filters {

// A literal, already converted to the field's type: strings and timestamps as text (timestamps
// normalised to UTC "YYYY-MM-DDTHH:MM:SSZ", the form the source stores), integers as int64,
// numbers as double, booleans as bool.
using Literal = std::variant<std::string, int64_t, double, bool>;

enum class Op {
  kEq, kNe, kLt, kLte, kGt, kGte, kIn, kNotIn, kContains, kStartsWith, kIsNull, kBetween,
};

// A condition tree. A leaf compares one field; a group ANDs or ORs its children.
struct Condition {
  enum class Kind { kLeaf, kAll, kAny };
  Kind kind = Kind::kAll;
  // Leaf:
  const catalog::Field* field = nullptr;
  Op op = Op::kEq;
  // kIn / kNotIn: any number; kBetween: two; kIsNull: one bool (true = IS NULL); else one.
  std::vector<Literal> values;
  // Groups:
  std::vector<Condition> children;
};

// Checks `filters` against the entity's catalog and returns the condition tree (a kAll group;
// empty when there are no filters). Errors: INVALID_ARGUMENT naming the path and the reason,
// e.g. `filters.employee_count.gte: expects an integer, got "ten"` or
// `filters.any_of[1].colour: unknown field for accounts`.
absl::StatusOr<Condition> Parse(const google::protobuf::Struct& filters,
                                const catalog::Entity& entity);

}  // namespace exportd::filters
