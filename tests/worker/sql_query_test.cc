// CompileQuery: the SQL text and parameters of an export, and that nothing from a request ever
// reaches the SQL text.
#include "worker/sql_query.h"

#include <cctype>
#include <set>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/catalog.h"
#include "common/filters.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace exportd {
namespace {

// absl::StrCat that also takes std::string_view (Debian's Abseil has its own absl::string_view).
absl::string_view Piece(std::string_view text) { return {text.data(), text.size()}; }
template <typename T>
const T& Piece(const T& value) {
  return value;
}
template <typename... Args>
std::string Cat(const Args&... args) {
  return absl::StrCat(Piece(args)...);
}

using ::exportd::testing::StatusIs;
using filters::Condition;
using filters::Literal;
using filters::Op;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const catalog::Entity& Accounts() {
  return *catalog::FindEntity(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
}

google::protobuf::Struct Json(std::string_view json) {
  google::protobuf::Struct filters;
  const auto status = google::protobuf::util::JsonStringToMessage(std::string(json), &filters);
  EXPECT_TRUE(status.ok()) << json << ": " << status.ToString();
  return filters;
}

Condition ParseOrDie(std::string_view json, const catalog::Entity& entity = Accounts()) {
  auto condition = filters::Parse(Json(json), entity);
  EXPECT_TRUE(condition.ok()) << json << ": " << condition.status();
  return condition.ok() ? *std::move(condition) : Condition();
}

std::string ParamText(const Literal& literal) {
  if (const auto* text = std::get_if<std::string>(&literal)) return Cat("'", *text, "'");
  if (const auto* integer = std::get_if<int64_t>(&literal)) return Cat(*integer);
  if (const auto* number = std::get_if<double>(&literal)) return Cat(*number, "d");
  return std::get<bool>(literal) ? "true" : "false";
}

// "<sql> | params" for the accounts export of id and name filtered by `json`.
std::string Compiled(std::string_view json, std::vector<std::string> fields = {"id", "name"}) {
  auto query = CompileQuery(Accounts(), fields, ParseOrDie(json));
  if (!query.ok()) return Cat("error: ", query.status().message());
  std::vector<std::string> params;
  for (const Literal& param : query->params) params.push_back(ParamText(param));
  return Cat(query->sql, " | ", absl::StrJoin(params, ", "));
}

constexpr std::string_view kSelect = R"(SELECT "id", "name" FROM "accounts")";

TEST(SqlQueryTest, NoFilterSelectsTheFieldsInOrder) {
  EXPECT_EQ(Compiled("{}"), Cat(kSelect, R"( ORDER BY "id" | )"));
  EXPECT_EQ(Compiled("{}", {"name", "id", "created_at"}),
            R"(SELECT "name", "id", "created_at" FROM "accounts" ORDER BY "id" | )");
}

TEST(SqlQueryTest, EveryEntityAndField) {
  for (const catalog::Entity& entity : catalog::Entities()) {
    std::vector<std::string> fields;
    std::vector<std::string> columns;
    for (const catalog::Field& field : entity.fields) {
      fields.emplace_back(field.name);
      columns.push_back(Cat("\"", field.name, "\""));
    }
    ASSERT_OK_AND_ASSIGN(SqlQuery query, CompileQuery(entity, fields, Condition()));
    EXPECT_EQ(query.sql, Cat("SELECT ", absl::StrJoin(columns, ", "), " FROM \"", entity.table,
                             "\" ORDER BY \"id\""));
    EXPECT_TRUE(query.params.empty());
  }
}

TEST(SqlQueryTest, EveryOperator) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {R"({"country": "DE"})", R"("country" = ?1 | 'DE')"},
      {R"({"country": {"ne": "DE"}})", R"("country" IS NOT ?1 | 'DE')"},
      {R"({"employee_count": {"lt": 10}})", R"("employee_count" < ?1 | 10)"},
      {R"({"employee_count": {"lte": 10}})", R"("employee_count" <= ?1 | 10)"},
      {R"({"intent_score": {"gt": 10.5}})", R"("intent_score" > ?1 | 10.5d)"},
      {R"({"created_at": {"gte": "2025-01-01"}})",
       R"("created_at" >= ?1 | '2025-01-01T00:00:00Z')"},
      {R"({"country": ["DE", "FR"]})", R"("country" IN (?1, ?2) | 'DE', 'FR')"},
      {R"({"country": {"not_in": ["DE", "FR"]}})",
       R"(("country" IS NULL OR "country" NOT IN (?1, ?2)) | 'DE', 'FR')"},
      {R"({"name": {"contains": "50%_off"}})", R"(instr("name", ?1) > 0 | '50%_off')"},
      {R"({"name": {"starts_with": "Acme"}})", R"(substr("name", 1, length(?1)) = ?1 | 'Acme')"},
      {R"({"region": null})", R"("region" IS NULL | )"},
      {R"({"region": {"is_null": false}})", R"("region" IS NOT NULL | )"},
      {R"({"employee_count": {"between": [10, 20]}})",
       R"(("employee_count" BETWEEN ?1 AND ?2) | 10, 20)"},
      {R"({"is_customer": true})", R"("is_customer" = ?1 | true)"},
  };
  for (const auto& [json, where] : cases) {
    EXPECT_EQ(
        Compiled(json),
        Cat(kSelect, " WHERE ", std::string(where).insert(where.find(" | "), R"( ORDER BY "id")")))
        << json;
  }
}

TEST(SqlQueryTest, GroupsNestInParentheses) {
  EXPECT_EQ(
      Compiled(R"({"country": "DE", "employee_count": {"gte": 100, "lt": 5000}})"),
      Cat(kSelect, R"( WHERE "country" = ?1 AND "employee_count" >= ?2 AND "employee_count" < ?3)",
          R"( ORDER BY "id" | 'DE', 100, 5000)"));
  EXPECT_EQ(
      Compiled(
          R"({"country": "DE", "any_of": [{"region": "EMEA"}, {"intent_score": {"gt": 80}}]})"),
      Cat(kSelect, R"( WHERE ("region" = ?1 OR "intent_score" > ?2) AND "country" = ?3)",
          R"( ORDER BY "id" | 'EMEA', 80d, 'DE')"));
  EXPECT_EQ(Compiled(R"({"any_of": [{"country": "DE", "is_customer": true},
                                    {"any_of": [{"region": null}, {"all_of": [
                                      {"name": {"starts_with": "A"}}, {"domain": {"ne": "x"}}]}]}]})"),
            Cat(kSelect, R"( WHERE (("country" = ?1 AND "is_customer" = ?2) OR "region" IS NULL)",
                R"( OR (substr("name", 1, length(?3)) = ?3 AND "domain" IS NOT ?4)))",
                R"( ORDER BY "id" | 'DE', true, 'A', 'x')"));
}

TEST(SqlQueryTest, EmptyGroupsAreTrueAndFalse) {
  Condition any;
  any.kind = Condition::Kind::kAny;
  ASSERT_OK_AND_ASSIGN(SqlQuery query, CompileQuery(Accounts(), {"id"}, any));
  EXPECT_EQ(query.sql, R"(SELECT "id" FROM "accounts" WHERE 0 ORDER BY "id")");
  Condition all_in_any;
  all_in_any.kind = Condition::Kind::kAny;
  all_in_any.children.emplace_back();  // An empty kAll.
  ASSERT_OK_AND_ASSIGN(query, CompileQuery(Accounts(), {"id"}, all_in_any));
  EXPECT_EQ(query.sql, R"(SELECT "id" FROM "accounts" WHERE 1 ORDER BY "id")");
}

// Checks that `sql` consists only of SQL keywords and functions, punctuation, ?N placeholders
// and quoted identifiers naming the entity's table or fields: no literal, no request text.
void ExpectOnlyKnownTokens(const std::string& sql, const catalog::Entity& entity) {
  static const std::set<std::string> kKeywords = {
      "SELECT", "FROM", "WHERE",   "ORDER", "BY",     "AND",    "OR", "IN", "NOT",
      "IS",     "NULL", "BETWEEN", "instr", "substr", "length", "0",  "1"};
  std::set<std::string> identifiers = {std::string(entity.table)};
  for (const catalog::Field& field : entity.fields) identifiers.emplace(field.name);
  EXPECT_EQ(sql.find('\''), std::string::npos) << sql;
  for (size_t i = 0; i < sql.size();) {
    const char c = sql[i];
    if (c == ' ' || c == ',' || c == '(' || c == ')' || c == '=' || c == '<' || c == '>') {
      ++i;
    } else if (c == '"') {
      const size_t end = sql.find('"', i + 1);
      ASSERT_NE(end, std::string::npos) << sql;
      EXPECT_TRUE(identifiers.contains(sql.substr(i + 1, end - i - 1)))
          << "identifier " << sql.substr(i, end - i + 1) << " in " << sql;
      i = end + 1;
    } else if (c == '?') {
      size_t end = i + 1;
      while (end < sql.size() && std::isdigit(static_cast<unsigned char>(sql[end]))) ++end;
      EXPECT_GT(end, i + 1) << sql;
      i = end;
    } else {
      size_t end = i;
      while (end < sql.size() && std::isalnum(static_cast<unsigned char>(sql[end]))) ++end;
      ASSERT_GT(end, i) << "unexpected character '" << c << "' in " << sql;
      EXPECT_TRUE(kKeywords.contains(sql.substr(i, end - i)))
          << "token " << sql.substr(i, end - i) << " in " << sql;
      i = end;
    }
  }
}

TEST(SqlQueryTest, ValuesNeverReachTheSqlText) {
  const std::string attacks[] = {
      "x' OR 1=1 --",
      "\"; DROP TABLE accounts; --",
      "'; DELETE FROM accounts WHERE '1'='1",
      "\") OR (\"1\"=\"1",
      "%' ESCAPE '\\",
      "1; ATTACH DATABASE '/tmp/x' AS x; --",
      std::string("nul\0byte", 8),
      "\n--\n/* */",
  };
  for (const std::string& attack : attacks) {
    google::protobuf::Struct filters;
    auto& fields = *filters.mutable_fields();
    fields["name"].set_string_value(attack);
    (*fields["domain"].mutable_struct_value()->mutable_fields())["contains"].set_string_value(
        attack);
    (*fields["industry"].mutable_struct_value()->mutable_fields())["starts_with"].set_string_value(
        attack);
    auto* in = (*fields["country"].mutable_struct_value()->mutable_fields())["not_in"]
                   .mutable_list_value();
    in->add_values()->set_string_value(attack);
    in->add_values()->set_string_value("DE");
    auto* between = (*fields["region"].mutable_struct_value()->mutable_fields())["between"]
                        .mutable_list_value();
    between->add_values()->set_string_value(attack);
    between->add_values()->set_string_value(attack + "z");
    ASSERT_OK_AND_ASSIGN(Condition condition, filters::Parse(filters, Accounts()));
    ASSERT_OK_AND_ASSIGN(SqlQuery query, CompileQuery(Accounts(), {"id", "name"}, condition));
    EXPECT_EQ(query.sql.find(attack), std::string::npos) << query.sql;
    EXPECT_EQ(query.sql.find("DROP"), std::string::npos) << query.sql;
    EXPECT_EQ(query.sql.find("--"), std::string::npos) << query.sql;
    ExpectOnlyKnownTokens(query.sql, Accounts());
    // Every value arrives intact as a parameter.
    EXPECT_THAT(query.params,
                ElementsAre(Literal(attack), Literal("DE"), Literal(attack), Literal(attack),
                            Literal(attack), Literal(attack), Literal(attack + "z")));
  }
}

TEST(SqlQueryTest, CompiledFiltersUseOnlyKnownTokens) {
  for (const catalog::Entity& entity : catalog::Entities()) {
    std::vector<std::string> fields;
    for (const catalog::Field& field : entity.fields) fields.emplace_back(field.name);
    const Condition condition = ParseOrDie(
        R"({"id": {"not_in": [1, 2], "between": [0, 9], "ne": 5}, "any_of": [{"id": null},
            {"id": {"is_null": false, "gte": 3}}]})",
        entity);
    ASSERT_OK_AND_ASSIGN(SqlQuery query, CompileQuery(entity, fields, condition));
    ExpectOnlyKnownTokens(query.sql, entity);
  }
}

TEST(SqlQueryTest, RequestedFieldNamesMustBeCatalogFields) {
  for (const std::vector<std::string>& fields : std::vector<std::vector<std::string>>{
           {"id", "name\""},
           {"id", "name FROM people --"},
           {"id", "\"name\""},
           {"id", "Name"},
           {"id", "email"},
           {"id", ""},
       }) {
    EXPECT_THAT(
        CompileQuery(Accounts(), fields, Condition()),
        StatusIs(absl::StatusCode::kInvalidArgument, "fields[1]: unknown field for accounts"))
        << fields[1];
  }
  EXPECT_THAT(CompileQuery(Accounts(), {}, Condition()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no fields")));
}

Condition Leaf(const catalog::Field* field, Op op, std::vector<Literal> values) {
  Condition leaf;
  leaf.kind = Condition::Kind::kLeaf;
  leaf.field = field;
  leaf.op = op;
  leaf.values = std::move(values);
  return leaf;
}

TEST(SqlQueryTest, ConditionsNotFromParseAreChecked) {
  const catalog::Field* name = catalog::FindField(Accounts(), "name");
  const catalog::Field* employees = catalog::FindField(Accounts(), "employee_count");
  // A field that only looks like the catalog's, and a field of another entity.
  static constexpr catalog::Field kForged = {"name\" = 'x' OR 1=1 --",
                                             catalog::FieldType::FIELD_TYPE_STRING, true, ""};
  static constexpr catalog::Field kLookalike = {"name", catalog::FieldType::FIELD_TYPE_STRING, true,
                                                ""};
  const catalog::Field* email =
      catalog::FindField(*catalog::FindEntity(exportjobs::v1::ENTITY_TYPE_PEOPLE), "email");
  const Condition bad[] = {
      Leaf(&kForged, Op::kEq, {std::string("x")}),
      Leaf(&kLookalike, Op::kEq, {std::string("x")}),
      Leaf(email, Op::kEq, {std::string("x")}),
      Leaf(nullptr, Op::kEq, {std::string("x")}),
      Leaf(name, Op::kEq, {}),
      Leaf(name, Op::kEq, {std::string("a"), std::string("b")}),
      Leaf(name, Op::kIn, {}),
      Leaf(name, Op::kBetween, {std::string("a")}),
      Leaf(name, Op::kIsNull, {std::string("a")}),
      Leaf(name, Op::kEq, {int64_t{1}}),
      Leaf(employees, Op::kEq, {1.0}),
      Leaf(employees, Op::kEq, {std::string("1")}),
  };
  for (const Condition& leaf : bad) {
    Condition root;
    root.children.push_back(leaf);
    EXPECT_THAT(CompileQuery(Accounts(), {"id"}, root),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

}  // namespace
}  // namespace exportd
