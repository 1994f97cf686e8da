// filters::Parse: the grammar of docs/filters.md, its conversions and its error messages.
#include "common/filters.h"

#include <charconv>
#include <cmath>
#include <map>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/catalog.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace exportd::filters {
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
using ::testing::HasSubstr;

const catalog::Entity& Accounts() {
  return *catalog::FindEntity(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
}

// The filters of a JSON object, as a create request carries them (numbers become doubles).
google::protobuf::Struct Json(std::string_view json) {
  google::protobuf::Struct filters;
  const auto status = google::protobuf::util::JsonStringToMessage(std::string(json), &filters);
  EXPECT_TRUE(status.ok()) << json << ": " << status.ToString();
  return filters;
}

std::string_view OpText(Op op) {
  switch (op) {
    case Op::kEq:
      return "eq";
    case Op::kNe:
      return "ne";
    case Op::kLt:
      return "lt";
    case Op::kLte:
      return "lte";
    case Op::kGt:
      return "gt";
    case Op::kGte:
      return "gte";
    case Op::kIn:
      return "in";
    case Op::kNotIn:
      return "not_in";
    case Op::kContains:
      return "contains";
    case Op::kStartsWith:
      return "starts_with";
    case Op::kIsNull:
      return "is_null";
    case Op::kBetween:
      return "between";
  }
  return "?";
}

// Literals show their C++ type: "text", 100 (int64), 100.0 (double), true.
std::string LiteralText(const Literal& literal) {
  if (const auto* text = std::get_if<std::string>(&literal)) return Cat("\"", *text, "\"");
  if (const auto* integer = std::get_if<int64_t>(&literal)) return Cat(*integer);
  if (const auto* number = std::get_if<double>(&literal)) {
    char buffer[64];
    std::string text(buffer, std::to_chars(buffer, buffer + sizeof(buffer), *number).ptr);
    if (text.find_first_of(".e") == std::string::npos) text += ".0";
    return text;
  }
  return std::get<bool>(literal) ? "true" : "false";
}

// A condition as a short string: all(country eq "DE", any(employee_count in [1, 2], ...)).
std::string Render(const Condition& condition) {
  if (condition.kind == Condition::Kind::kLeaf) {
    std::vector<std::string> values;
    for (const Literal& value : condition.values) values.push_back(LiteralText(value));
    const bool list =
        condition.op == Op::kIn || condition.op == Op::kNotIn || condition.op == Op::kBetween;
    return Cat(condition.field->name, " ", OpText(condition.op), " ", list ? "[" : "",
               absl::StrJoin(values, ", "), list ? "]" : "");
  }
  std::vector<std::string> children;
  for (const Condition& child : condition.children) children.push_back(Render(child));
  return Cat(condition.kind == Condition::Kind::kAll ? "all(" : "any(",
             absl::StrJoin(children, ", "), ")");
}

// The rendered condition of `json` for accounts, or "error: <message>".
std::string Parsed(std::string_view json) {
  auto condition = Parse(Json(json), Accounts());
  if (!condition.ok()) return Cat("error: ", condition.status().message());
  return Render(*condition);
}

TEST(FiltersTest, NoFiltersIsAnEmptyAllGroup) {
  auto condition = Parse(google::protobuf::Struct(), Accounts());
  ASSERT_OK(condition);
  EXPECT_EQ(condition->kind, Condition::Kind::kAll);
  EXPECT_TRUE(condition->children.empty());
}

TEST(FiltersTest, ScalarMeansEqualsConvertedToTheFieldType) {
  EXPECT_EQ(Parsed(R"({"country": "DE"})"), R"(all(country eq "DE"))");
  EXPECT_EQ(Parsed(R"({"employee_count": 100})"), "all(employee_count eq 100)");
  EXPECT_EQ(Parsed(R"({"intent_score": 80})"), "all(intent_score eq 80.0)");
  EXPECT_EQ(Parsed(R"({"intent_score": 80.5})"), "all(intent_score eq 80.5)");
  EXPECT_EQ(Parsed(R"({"is_customer": true})"), "all(is_customer eq true)");
  EXPECT_EQ(Parsed(R"({"created_at": "2025-01-31T09:30:00+02:00"})"),
            R"(all(created_at eq "2025-01-31T07:30:00Z"))");
}

TEST(FiltersTest, ListMeansIn) {
  EXPECT_EQ(Parsed(R"({"country": ["DE", "FR"]})"), R"(all(country in ["DE", "FR"]))");
  EXPECT_EQ(Parsed(R"({"employee_count": [10, 20]})"), "all(employee_count in [10, 20])");
  EXPECT_EQ(Parsed(R"({"created_at": ["2025-01-31"]})"),
            R"(all(created_at in ["2025-01-31T00:00:00Z"]))");
}

TEST(FiltersTest, NullMeansIsNull) {
  EXPECT_EQ(Parsed(R"({"country": null})"), "all(country is_null true)");
  EXPECT_EQ(Parsed(R"({"country": {"eq": null}})"), "all(country is_null true)");
  EXPECT_EQ(Parsed(R"({"country": {"ne": null}})"), "all(country is_null false)");
  EXPECT_EQ(Parsed(R"({"country": {"is_null": false}})"), "all(country is_null false)");
}

TEST(FiltersTest, EveryOperator) {
  EXPECT_EQ(Parsed(R"({"country": {"eq": "DE"}})"), R"(all(country eq "DE"))");
  EXPECT_EQ(Parsed(R"({"country": {"ne": "DE"}})"), R"(all(country ne "DE"))");
  EXPECT_EQ(Parsed(R"({"employee_count": {"lt": 10}})"), "all(employee_count lt 10)");
  EXPECT_EQ(Parsed(R"({"employee_count": {"lte": 10}})"), "all(employee_count lte 10)");
  EXPECT_EQ(Parsed(R"({"intent_score": {"gt": 10}})"), "all(intent_score gt 10.0)");
  EXPECT_EQ(Parsed(R"({"created_at": {"gte": "2025-01-01"}})"),
            R"(all(created_at gte "2025-01-01T00:00:00Z"))");
  EXPECT_EQ(Parsed(R"({"domain": {"gt": "m"}})"), R"(all(domain gt "m"))");
  EXPECT_EQ(Parsed(R"({"industry": {"in": ["Software"]}})"), R"(all(industry in ["Software"]))");
  EXPECT_EQ(Parsed(R"({"industry": {"not_in": ["Software", "Retail"]}})"),
            R"(all(industry not_in ["Software", "Retail"]))");
  EXPECT_EQ(Parsed(R"({"name": {"contains": "50%_off"}})"), R"(all(name contains "50%_off"))");
  EXPECT_EQ(Parsed(R"({"name": {"starts_with": "Acme"}})"), R"(all(name starts_with "Acme"))");
  EXPECT_EQ(Parsed(R"({"name": {"contains": ""}})"), R"(all(name contains ""))");
  EXPECT_EQ(Parsed(R"({"region": {"is_null": true}})"), "all(region is_null true)");
  EXPECT_EQ(Parsed(R"({"employee_count": {"between": [10, 10]}})"),
            "all(employee_count between [10, 10])");
  EXPECT_EQ(Parsed(R"({"created_at": {"between": ["2025-01-01", "2025-02-01T00:00:00+01:00"]}})"),
            R"(all(created_at between ["2025-01-01T00:00:00Z", "2025-01-31T23:00:00Z"]))");
  EXPECT_EQ(Parsed(R"({"is_customer": {"ne": false}})"), "all(is_customer ne false)");
}

TEST(FiltersTest, KeysAndOperatorsAreAndedInSortedOrder) {
  EXPECT_EQ(Parsed(R"({"employee_count": {"lt": 5000, "gte": 100}, "country": "DE"})"),
            R"(all(country eq "DE", employee_count gte 100, employee_count lt 5000))");
}

TEST(FiltersTest, AnyOfAndAllOfMakeNestedGroups) {
  EXPECT_EQ(
      Parsed(R"({"country": "DE", "any_of": [{"region": "EMEA"}, {"intent_score": {"gt": 80}}]})"),
      R"(all(any(region eq "EMEA", intent_score gt 80.0), country eq "DE"))");
  // A filter object with two keys inside any_of is an AND group.
  EXPECT_EQ(Parsed(R"({"any_of": [{"country": "DE", "is_customer": true}, {"region": "APAC"}]})"),
            R"(all(any(all(country eq "DE", is_customer eq true), region eq "APAC")))");
  // Nested groups; all_of inside all_of merges into it.
  EXPECT_EQ(Parsed(R"({"all_of": [{"any_of": [{"country": "DE"}, {"all_of": [
                         {"region": "EMEA"}, {"any_of": [{"industry": null},
                         {"employee_count": {"gt": 5}}]}]}]}, {"is_customer": false}]})"),
            R"(all(any(country eq "DE", all(region eq "EMEA", any(industry is_null true, )"
            R"(employee_count gt 5))), is_customer eq false))");
  // A one-element group is its element.
  EXPECT_EQ(Parsed(R"({"any_of": [{"country": "DE"}]})"), R"(all(country eq "DE"))");
}

TEST(FiltersTest, TimestampsAreNormalisedToUtc) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"2025-01-31T09:30:00Z", "2025-01-31T09:30:00Z"},
      {"2025-01-31t09:30:00z", "2025-01-31T09:30:00Z"},
      {"2025-01-31T09:30:00+02:00", "2025-01-31T07:30:00Z"},
      {"2025-01-31T23:30:00-05:00", "2025-02-01T04:30:00Z"},
      {"2025-01-01T01:00:00+05:30", "2024-12-31T19:30:00Z"},
      {"2024-12-31T22:00:00-03:00", "2025-01-01T01:00:00Z"},
      {"2025-03-01T00:30:00+01:00", "2025-02-28T23:30:00Z"},
      {"2024-02-29T12:00:00Z", "2024-02-29T12:00:00Z"},
      {"2025-01-31T09:30:00.000Z", "2025-01-31T09:30:00Z"},
      {"2025-01-31T09:30:00.0+00:00", "2025-01-31T09:30:00Z"},
      {"2025-01-31", "2025-01-31T00:00:00Z"},
      {"0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"},
      {"9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"},
  };
  for (const auto& [input, normalized] : cases) {
    EXPECT_EQ(Parsed(Cat(R"({"created_at": ")", input, R"("})")),
              Cat(R"(all(created_at eq ")", normalized, R"("))"))
        << input;
  }
}

TEST(FiltersTest, MalformedTimestampsAreRefused) {
  for (std::string_view input : {
           "",
           "yesterday",
           "2025-02-29",
           "2025-13-01",
           "2025-00-10",
           "2025-01-32",
           "2025-01-31T24:00:00Z",
           "2025-01-31T09:60:00Z",
           "2025-01-31T09:30:60Z",
           "2025-01-31T09:30Z",
           "2025-01-31T09:30:00",
           "2025-01-31T09:30:00+0200",
           "2025-01-31T09:30:00+24:00",
           "2025-01-31 09:30:00Z",
           "2025-1-31",
           " 2025-01-31",
           "2025-01-31 ",
           "2025-01-31T09:30:00.Z",
           "2025-01-31T09:30:00ZZ",
           "+2025-01-31",
           "0000-01-01T00:00:00+00:01",  // year -1 in UTC
           "9999-12-31T23:59:59-00:01",  // year 10000 in UTC
       }) {
    EXPECT_EQ(Parsed(Cat(R"({"created_at": {"gte": ")", input, R"("}})")),
              Cat("error: filters.created_at.gte: expects an RFC 3339 timestamp "
                  "(2025-01-31T09:30:00Z, any offset) or a date (2025-01-31), got \"",
                  input, "\""))
        << input;
  }
  EXPECT_EQ(Parsed(R"({"created_at": "2025-01-31T09:30:00.5Z"})"),
            "error: filters.created_at: timestamps have whole seconds; a fraction of a second "
            "must be zero, got \"2025-01-31T09:30:00.5Z\"");
  EXPECT_EQ(Parsed(R"({"created_at": 1738315800})"),
            "error: filters.created_at: expects an RFC 3339 timestamp (2025-01-31T09:30:00Z, "
            "any offset) or a date (2025-01-31), got 1738315800");
}

TEST(FiltersTest, IntegersMustBeWholeAndWithinTwoToThe53) {
  EXPECT_EQ(Parsed(R"({"employee_count": 9007199254740992})"),
            "all(employee_count eq 9007199254740992)");
  EXPECT_EQ(Parsed(R"({"employee_count": -9007199254740992})"),
            "all(employee_count eq -9007199254740992)");
  EXPECT_EQ(Parsed(R"({"employee_count": 1e3})"), "all(employee_count eq 1000)");
  EXPECT_EQ(Parsed(R"({"employee_count": -0})"), "all(employee_count eq 0)");
  EXPECT_EQ(Parsed(R"({"employee_count": 9007199254740994})"),
            "error: filters.employee_count: expects an integer between -9007199254740992 and "
            "9007199254740992 (2^53), got 9007199254740994");
  EXPECT_EQ(Parsed(R"({"employee_count": {"lt": -1e300}})"),
            "error: filters.employee_count.lt: expects an integer between -9007199254740992 and "
            "9007199254740992 (2^53), got -1e+300");
  EXPECT_EQ(Parsed(R"({"employee_count": 1.5})"),
            "error: filters.employee_count: expects an integer, got 1.5");
  EXPECT_EQ(Parsed(R"({"employee_count": {"gte": "ten"}})"),
            "error: filters.employee_count.gte: expects an integer, got \"ten\"");
  EXPECT_EQ(Parsed(R"({"employee_count": {"gte": "10"}})"),
            "error: filters.employee_count.gte: expects an integer, got \"10\"");
  EXPECT_EQ(Parsed(R"({"employee_count": true})"),
            "error: filters.employee_count: expects an integer, got true");
}

TEST(FiltersTest, NonFiniteNumbersAreRefused) {
  google::protobuf::Struct filters;
  (*filters.mutable_fields())["intent_score"].set_number_value(std::nan(""));
  EXPECT_THAT(Parse(filters, Accounts()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "filters.intent_score: expects a number, got nan"));
  (*filters.mutable_fields())["intent_score"].set_number_value(HUGE_VAL);
  EXPECT_THAT(Parse(filters, Accounts()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "filters.intent_score: expects a number, got inf"));
  filters.Clear();
  (*filters.mutable_fields())["employee_count"].set_number_value(-HUGE_VAL);
  EXPECT_THAT(Parse(filters, Accounts()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "filters.employee_count: expects an integer, got -inf"));
}

struct ErrorCase {
  std::string_view json;
  std::string message;
};

TEST(FiltersTest, ErrorsNameThePathAndTheReason) {
  const std::string ops =
      "(one of eq, ne, lt, lte, gt, gte, in, not_in, contains, starts_with, is_null, between)";
  const ErrorCase cases[] = {
      {R"({"colour": "red"})", "filters.colour: unknown field for accounts"},
      {R"({"any_of": [{"country": "DE"}, {"colour": 1}]})",
       "filters.any_of[1].colour: unknown field for accounts"},
      {R"({"email": "a@b.c"})", "filters.email: unknown field for accounts"},
      {R"({"bad name": 1})", "filters[\"bad name\"]: unknown field for accounts"},
      {R"({"gte": 5})",
       R"(filters.gte: "gte" is an operator, not a field; write {"<field>": {"gte": <value>}})"},
      {R"({"country": {"like": "D%"}})", "filters.country.like: unknown operator " + ops},
      {R"({"country": {"region": "EMEA"}})", "filters.country.region: unknown operator " + ops +
                                                 "; \"region\" is a field, not an operator"},
      {R"({"country": {"any_of": [{"eq": "DE"}]}})",
       "filters.country.any_of: unknown operator " + ops +
           "; any_of and all_of combine filter objects and belong where field names do"},
      {R"({"country": {}})",
       "filters.country: an operator object must not be empty (operators: eq, ne, lt, lte, gt, "
       "gte, in, not_in, contains, starts_with, is_null, between)"},
      {R"({"country": 5})", "filters.country: expects a string, got 5"},
      {R"({"country": {"gt": null}})", "filters.country.gt: expects a string, got null"},
      {R"({"country": {"eq": ["DE"]}})", "filters.country.eq: expects a string, got a list"},
      {R"({"country": {"eq": {"eq": "DE"}}})",
       "filters.country.eq: expects a string, got an object"},
      {R"({"intent_score": "high"})", "filters.intent_score: expects a number, got \"high\""},
      {R"({"is_customer": "yes"})", "filters.is_customer: expects true or false, got \"yes\""},
      {R"({"is_customer": 1})", "filters.is_customer: expects true or false, got 1"},
      {R"({"country": []})",
       "filters.country: expects a non-empty list (an empty list would match nothing)"},
      {R"({"country": {"in": []}})",
       "filters.country.in: expects a non-empty list (an empty list would match nothing)"},
      {R"({"country": {"not_in": "DE"}})", "filters.country.not_in: expects a list, got \"DE\""},
      {R"({"employee_count": {"in": [1, 2.5]}})",
       "filters.employee_count.in[1]: expects an integer, got 2.5"},
      {R"({"country": ["DE", 7]})", "filters.country[1]: expects a string, got 7"},
      {R"({"country": {"in": ["DE", null]}})",
       R"(filters.country.in[1]: null is not allowed in a list; combine the list with {"is_null": true} in an any_of)"},
      {R"({"employee_count": {"between": [500, 100]}})",
       "filters.employee_count.between: low 500 is greater than high 100"},
      {R"({"domain": {"between": ["m", "b"]}})",
       "filters.domain.between: low \"m\" is greater than high \"b\""},
      {R"({"created_at": {"between": ["2025-01-01T01:00:00+02:00", "2024-12-31T22:00:00Z"]}})",
       "filters.created_at.between: low \"2024-12-31T23:00:00Z\" is greater than high "
       "\"2024-12-31T22:00:00Z\""},
      {R"({"employee_count": {"between": [1]}})",
       "filters.employee_count.between: expects a list of two values [low, high], got a list "
       "of 1"},
      {R"({"employee_count": {"between": [1, 2, 3]}})",
       "filters.employee_count.between: expects a list of two values [low, high], got a list "
       "of 3"},
      {R"({"employee_count": {"between": 5}})",
       "filters.employee_count.between: expects a list of two values [low, high], got 5"},
      {R"({"employee_count": {"between": [1, "x"]}})",
       "filters.employee_count.between[1]: expects an integer, got \"x\""},
      {R"({"country": {"is_null": "yes"}})",
       "filters.country.is_null: expects true or false, got \"yes\""},
      {R"({"country": {"is_null": null}})",
       "filters.country.is_null: expects true or false, got null"},
      {R"({"employee_count": {"contains": "1"}})",
       "filters.employee_count.contains: contains does not apply to integer fields (only to "
       "string fields)"},
      {R"({"created_at": {"starts_with": "2025"}})",
       "filters.created_at.starts_with: starts_with does not apply to timestamp fields (only "
       "to string fields)"},
      {R"({"is_customer": {"gt": false}})",
       "filters.is_customer.gt: gt does not apply to boolean fields (only to integer, number, "
       "timestamp and string fields)"},
      {R"({"is_customer": {"between": [false, true]}})",
       "filters.is_customer.between: between does not apply to boolean fields (only to "
       "integer, number, timestamp and string fields)"},
      {R"({"is_customer": {"in": [true]}})",
       "filters.is_customer.in: in does not apply to boolean fields (only to string, integer, "
       "number and timestamp fields)"},
      {R"({"is_customer": [true, false]})",
       "filters.is_customer: a list (in) does not apply to boolean fields (only to string, "
       "integer, number and timestamp fields)"},
      {R"({"any_of": []})",
       "filters.any_of: expects a non-empty list of filter objects, got an empty list"},
      {R"({"all_of": {"country": "DE"}})",
       "filters.all_of: expects a non-empty list of filter objects, got an object"},
      {R"({"any_of": "DE"})",
       "filters.any_of: expects a non-empty list of filter objects, got \"DE\""},
      {R"({"any_of": [{"country": "DE"}, "DE"]})",
       "filters.any_of[1]: expects a filter object, got \"DE\""},
      {R"({"all_of": [{}]})",
       "filters.all_of[0]: a filter object in any_of / all_of must not be empty"},
      {R"({"any_of": [{"all_of": [{"country": {"in": [1]}}]}]})",
       "filters.any_of[0].all_of[0].country.in[0]: expects a string, got 1"},
  };
  for (const ErrorCase& error : cases) {
    EXPECT_THAT(Parse(Json(error.json), Accounts()),
                StatusIs(absl::StatusCode::kInvalidArgument, error.message))
        << error.json;
  }
}

TEST(FiltersTest, FieldNamesThatCouldBeSqlAreUnknownFields) {
  EXPECT_EQ(Parsed(R"({"name\" OR 1=1 --": "x"})"),
            R"(error: filters["name\" OR 1=1 --"]: unknown field for accounts)");
  EXPECT_EQ(Parsed(R"({"\"name\"": "x"})"),
            R"(error: filters["\"name\""]: unknown field for accounts)");
  EXPECT_EQ(Parsed(R"({"name; DROP TABLE accounts; --": "x"})"),
            R"(error: filters["name; DROP TABLE accounts; --"]: unknown field for accounts)");
  EXPECT_EQ(Parsed(R"({"Name": "x"})"), "error: filters.Name: unknown field for accounts");
  EXPECT_EQ(Parsed(R"({"name ": "x"})"), R"(error: filters["name "]: unknown field for accounts)");
  EXPECT_EQ(Parsed(R"({"": "x"})"), R"(error: filters[""]: unknown field for accounts)");
  // Long keys are cut in the message.
  EXPECT_EQ(Parsed(Cat(R"({")", std::string(100, 'x'), R"(": 1})")),
            Cat("error: filters[\"", std::string(40, 'x'), "...\"]: unknown field for accounts"));
}

TEST(FiltersTest, FieldsAreCheckedAgainstTheEntity) {
  const catalog::Entity& people = *catalog::FindEntity(exportjobs::v1::ENTITY_TYPE_PEOPLE);
  ASSERT_OK(Parse(Json(R"({"email": {"contains": "@acme"}})"), people));
  EXPECT_THAT(
      Parse(Json(R"({"domain": "acme.com"})"), people),
      StatusIs(absl::StatusCode::kInvalidArgument, "filters.domain: unknown field for people"));
}

TEST(FiltersTest, LiteralsHaveTheFieldsRepresentation) {
  ASSERT_OK_AND_ASSIGN(Condition condition,
                       Parse(Json(R"({"employee_count": 3, "intent_score": 3, "is_customer": false,
                    "created_at": "2025-01-01", "name": "3"})"),
                             Accounts()));
  ASSERT_EQ(condition.children.size(), 5u);
  std::map<std::string_view, Literal> by_field;
  for (const Condition& leaf : condition.children) {
    ASSERT_EQ(leaf.kind, Condition::Kind::kLeaf);
    ASSERT_EQ(leaf.values.size(), 1u);
    by_field[leaf.field->name] = leaf.values[0];
    // The field is the catalog's own entry.
    EXPECT_EQ(leaf.field, catalog::FindField(Accounts(), leaf.field->name));
  }
  EXPECT_EQ(by_field["employee_count"], Literal(int64_t{3}));
  EXPECT_EQ(by_field["intent_score"], Literal(3.0));
  EXPECT_EQ(by_field["is_customer"], Literal(false));
  EXPECT_EQ(by_field["created_at"], Literal(std::string("2025-01-01T00:00:00Z")));
  EXPECT_EQ(by_field["name"], Literal(std::string("3")));
}

TEST(FiltersTest, ParsingIsDeterministic) {
  const auto filters = Json(
      R"({"z_unknown_last": 1, "country": "DE", "any_of": [{"region": "EMEA"}, {"name": "x"}],
          "employee_count": {"lte": 9, "gte": 1, "ne": 5}, "industry": ["b", "a"]})");
  // Errors are reported for the first key in sorted order, whatever the map's order.
  EXPECT_THAT(Parse(filters, Accounts()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "filters.z_unknown_last: unknown field for accounts"));
  auto valid = filters;
  valid.mutable_fields()->erase("z_unknown_last");
  EXPECT_EQ(Render(*Parse(valid, Accounts())),
            R"(all(any(region eq "EMEA", name eq "x"), country eq "DE", employee_count gte 1, )"
            R"(employee_count lte 9, employee_count ne 5, industry in ["b", "a"]))");
}

// {"any_of": [{"any_of": [ ... {"country": "DE"} ... ]}]} with `levels` any_of keys.
google::protobuf::Struct Nested(int levels) {
  google::protobuf::Struct filters;
  (*filters.mutable_fields())["country"].set_string_value("DE");
  for (int i = 0; i < levels; ++i) {
    google::protobuf::Struct outer;
    *(*outer.mutable_fields())["any_of"]
         .mutable_list_value()
         ->add_values()
         ->mutable_struct_value() = filters;
    filters = std::move(outer);
  }
  return filters;
}

TEST(FiltersTest, GroupNestingIsBounded) {
  ASSERT_OK_AND_ASSIGN(Condition condition, Parse(Nested(32), Accounts()));
  EXPECT_EQ(Render(condition), R"(all(country eq "DE"))");
  EXPECT_THAT(Parse(Nested(33), Accounts()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("any_of / all_of nested more than 32 levels deep")));
}

}  // namespace
}  // namespace exportd::filters
