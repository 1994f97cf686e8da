// SqliteSource: hand-computed results on a small hand-made database, and results on the demo
// data compared with an independent evaluation of the same condition over every row.
#include "worker/sqlite_source.h"

#include <sqlite3.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/catalog.h"
#include "common/filters.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"
#include "worker/demo_data.h"

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

using ::exportd::test_support::TempDir;
using ::exportd::testing::StatusIs;
using filters::Condition;
using filters::Literal;
using filters::Op;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const catalog::Entity& EntityNamed(std::string_view table) {
  for (const catalog::Entity& entity : catalog::Entities()) {
    if (entity.table == table) return entity;
  }
  ADD_FAILURE() << "no entity " << table;
  return catalog::Entities()[0];
}

const catalog::Entity& Accounts() { return EntityNamed("accounts"); }

google::protobuf::Struct Json(std::string_view json) {
  google::protobuf::Struct filters;
  const auto status = google::protobuf::util::JsonStringToMessage(std::string(json), &filters);
  EXPECT_TRUE(status.ok()) << json << ": " << status.ToString();
  return filters;
}

Condition ParseOrDie(std::string_view json, const catalog::Entity& entity) {
  auto condition = filters::Parse(Json(json), entity);
  EXPECT_TRUE(condition.ok()) << json << ": " << condition.status();
  return condition.ok() ? *std::move(condition) : Condition();
}

// Runs `sql` on the database at `path` (created when missing), failing the test on error.
void Exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << (error != nullptr ? error : "") << " in " << sql;
  sqlite3_free(error);
  sqlite3_close(db);
}

// ---------------------------------------------------------------------------------------------
// A small hand-made accounts table.

class HandMadeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.path() + "/accounts.db";
    Exec(path_, SqliteSchema(Accounts()));
    // id, name, domain, industry, employee_count, annual_revenue, country, region, intent_score,
    // engagement_score, is_customer, created_at
    Exec(path_, R"sql(INSERT INTO accounts VALUES
      (1, 'Acme, Inc.', 'acme.com', 'Software', 500, 15000000.0, 'US', 'AMER', 80.5, 40.0, 1,
          '2024-01-15T10:00:00Z'),
      (2, '100% Organic_Foods', 'organic.de', 'Retail', 50, NULL, 'DE', 'EMEA', 20.0, NULL, 0,
          '2023-06-01T00:00:00Z'),
      (3, 'x'' OR 1=1 --', 'evil.example', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0,
          '2025-01-01T00:00:00Z'),
      (4, 'Müller "Präzision" GmbH', 'mueller.de', 'Manufacturing', 5000, 200000000.0, 'DE',
          'EMEA', 95.0, 88.5, 1, '2020-02-29T12:00:00Z'),
      (5, 'Line' || char(10) || 'Break Ltd', 'linebreak.co.uk', 'Software', 12, 1000000.0, 'GB',
          'EMEA', 55.0, 60.0, 0, '2025-12-31T23:59:59Z'),
      (6, 'acme labs', 'acmelabs.jp', 'Biotechnology', 300, 30000000.0, 'JP', 'APAC', 70.0,
          NULL, NULL, '2022-07-04T08:30:00Z'),
      (7, 'Organic%Foods', 'x.com', 'Retail', 50, 2000000.0, 'US', 'AMER', 30.0, 10.0, 0,
          '2021-03-03T03:03:03Z'),
      (8, 'ACME Corp', 'acme.org', 'Software', 100000, 5000000000.0, 'US', 'AMER', 10.0, 5.0, 1,
          '2019-05-05T05:05:05Z')
    )sql");
    ASSERT_OK_AND_ASSIGN(source_, SqliteSource::Open(path_));
  }

  // The ids of the accounts matching `json`; checks that Count agrees.
  std::vector<int64_t> Ids(std::string_view json) {
    const Condition condition = ParseOrDie(json, Accounts());
    std::vector<int64_t> ids;
    const absl::Status scanned = source_->Scan(Accounts(), {"id"}, condition, [&](const Row& row) {
      ids.push_back(std::get<int64_t>(row.at(0)));
      return true;
    });
    EXPECT_OK(scanned) << json;
    auto count = source_->Count(Accounts(), condition);
    EXPECT_THAT(count, ::exportd::testing::IsOkAndHolds(static_cast<int64_t>(ids.size()))) << json;
    return ids;
  }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<SqliteSource> source_;
};

TEST_F(HandMadeTest, NoFilterReturnsEveryRowInIdOrder) {
  EXPECT_THAT(Ids("{}"), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
}

TEST_F(HandMadeTest, CellsFollowTheCatalogTypesInTheRequestedOrder) {
  std::vector<Row> rows;
  ASSERT_OK(source_->Scan(Accounts(),
                          {"created_at", "id", "is_customer", "annual_revenue", "name",
                           "employee_count", "engagement_score"},
                          ParseOrDie(R"({"id": [2, 6]})", Accounts()), [&](const Row& row) {
                            rows.push_back(row);
                            return true;
                          }));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], (Row{std::string("2023-06-01T00:00:00Z"), int64_t{2}, false, std::monostate(),
                          std::string("100% Organic_Foods"), int64_t{50}, std::monostate()}));
  EXPECT_EQ(rows[1], (Row{std::string("2022-07-04T08:30:00Z"), int64_t{6}, std::monostate(),
                          30000000.0, std::string("acme labs"), int64_t{300}, std::monostate()}));
}

TEST_F(HandMadeTest, TextComesBackByteForByte) {
  std::vector<std::string> names;
  ASSERT_OK(source_->Scan(Accounts(), {"name"}, ParseOrDie(R"({"id": [3, 4, 5]})", Accounts()),
                          [&](const Row& row) {
                            names.push_back(std::get<std::string>(row.at(0)));
                            return true;
                          }));
  EXPECT_THAT(names, ElementsAre("x' OR 1=1 --", "Müller \"Präzision\" GmbH", "Line\nBreak Ltd"));
}

TEST_F(HandMadeTest, ContainsAndStartsWithTreatWildcardsAsText) {
  EXPECT_THAT(Ids(R"({"name": {"contains": "c_F"}})"), ElementsAre(2));
  EXPECT_THAT(Ids(R"({"name": {"contains": "c%F"}})"), ElementsAre(7));
  EXPECT_THAT(Ids(R"({"name": {"contains": "%"}})"), ElementsAre(2, 7));
  EXPECT_THAT(Ids(R"({"name": {"contains": "_"}})"), ElementsAre(2));
  EXPECT_THAT(Ids(R"({"name": {"starts_with": "100%"}})"), ElementsAre(2));
  EXPECT_THAT(Ids(R"({"name": {"starts_with": "1_0"}})"), IsEmpty());
  EXPECT_THAT(Ids(R"({"name": {"contains": "\\"}})"), IsEmpty());
  EXPECT_THAT(Ids(R"({"name": {"contains": "\n"}})"), ElementsAre(5));
  EXPECT_THAT(Ids(R"({"name": {"contains": "\""}})"), ElementsAre(4));
  EXPECT_THAT(Ids(R"({"name": {"contains": "Präzision"}})"), ElementsAre(4));
  EXPECT_THAT(Ids(R"({"name": {"starts_with": "Mü"}})"), ElementsAre(4));
  EXPECT_THAT(Ids(R"({"name": {"contains": ""}})"), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
  EXPECT_THAT(Ids(R"({"industry": {"starts_with": ""}})"), ElementsAre(1, 2, 4, 5, 6, 7, 8));
}

TEST_F(HandMadeTest, ContainsAndStartsWithAreCaseSensitive) {
  EXPECT_THAT(Ids(R"({"name": {"contains": "Acme"}})"), ElementsAre(1));
  EXPECT_THAT(Ids(R"({"name": {"starts_with": "acme"}})"), ElementsAre(6));
  EXPECT_THAT(Ids(R"({"name": {"starts_with": "ACME"}})"), ElementsAre(8));
}

TEST_F(HandMadeTest, InjectionAttemptsAreJustValues) {
  EXPECT_THAT(Ids(R"({"name": "x' OR 1=1 --"})"), ElementsAre(3));
  EXPECT_THAT(Ids(R"({"name": "\"; DROP TABLE accounts; --"})"), IsEmpty());
  EXPECT_THAT(Ids(R"({"name": {"in": ["'; DELETE FROM accounts; --", "x' OR 1=1 --"]}})"),
              ElementsAre(3));
  EXPECT_THAT(Ids(R"({"name": {"contains": "' OR '1'='1"}})"), IsEmpty());
  EXPECT_THAT(Ids(R"({"domain": {"starts_with": "a') OR 1=1; --"}})"), IsEmpty());
  // Nothing was dropped or deleted.
  EXPECT_EQ(Ids("{}").size(), 8u);
}

TEST_F(HandMadeTest, NeAndNotInMatchNull) {
  EXPECT_THAT(Ids(R"({"country": {"ne": "US"}})"), ElementsAre(2, 3, 4, 5, 6));
  EXPECT_THAT(Ids(R"({"country": {"not_in": ["US", "DE"]}})"), ElementsAre(3, 5, 6));
  EXPECT_THAT(Ids(R"({"is_customer": {"ne": true}})"), ElementsAre(2, 3, 5, 6, 7));
  EXPECT_THAT(Ids(R"({"employee_count": {"ne": 50}})"), ElementsAre(1, 3, 4, 5, 6, 8));
  // Every other comparison skips NULL.
  EXPECT_THAT(Ids(R"({"country": ["US", "DE"]})"), ElementsAre(1, 2, 4, 7, 8));
  EXPECT_THAT(Ids(R"({"country": {"lt": "ZZ"}})"), ElementsAre(1, 2, 4, 5, 6, 7, 8));
  EXPECT_THAT(Ids(R"({"is_customer": false})"), ElementsAre(2, 3, 5, 7));
}

TEST_F(HandMadeTest, IsNull) {
  EXPECT_THAT(Ids(R"({"country": null})"), ElementsAre(3));
  EXPECT_THAT(Ids(R"({"engagement_score": {"is_null": true}})"), ElementsAre(2, 3, 6));
  EXPECT_THAT(Ids(R"({"is_customer": {"eq": null}})"), ElementsAre(6));
  EXPECT_THAT(Ids(R"({"annual_revenue": {"ne": null}})"), ElementsAre(1, 4, 5, 6, 7, 8));
}

TEST_F(HandMadeTest, NumbersIntegersAndRanges) {
  EXPECT_THAT(Ids(R"({"employee_count": {"between": [50, 500]}})"), ElementsAre(1, 2, 6, 7));
  EXPECT_THAT(Ids(R"({"employee_count": {"gt": 50, "lte": 5000}})"), ElementsAre(1, 4, 6));
  EXPECT_THAT(Ids(R"({"annual_revenue": {"gte": 3e7}})"), ElementsAre(4, 6, 8));
  EXPECT_THAT(Ids(R"({"intent_score": 80.5})"), ElementsAre(1));
  EXPECT_THAT(Ids(R"({"intent_score": {"lt": 20}})"), ElementsAre(8));
  EXPECT_THAT(Ids(R"({"intent_score": {"between": [20, 55]}})"), ElementsAre(2, 5, 7));
  EXPECT_THAT(Ids(R"({"domain": {"between": ["acme.com", "acme.org"]}})"), ElementsAre(1, 8));
  EXPECT_THAT(Ids(R"({"domain": {"gte": "x"}})"), ElementsAre(7));
}

TEST_F(HandMadeTest, TimestampsCompareInUtc) {
  EXPECT_THAT(Ids(R"({"created_at": {"gte": "2024-01-01", "lt": "2025-12-31T23:59:59Z"}})"),
              ElementsAre(1, 3));
  EXPECT_THAT(Ids(R"({"created_at": {"gte": "2024-01-01", "lte": "2026-01-01T00:59:59+01:00"}})"),
              ElementsAre(1, 3, 5));
  EXPECT_THAT(Ids(R"({"created_at": "2020-02-29T07:00:00-05:00"})"), ElementsAre(4));
  EXPECT_THAT(Ids(R"({"created_at": {"between": ["2019-05-05T05:05:05Z", "2021-03-03"]}})"),
              ElementsAre(4, 8));
}

TEST_F(HandMadeTest, Groups) {
  EXPECT_THAT(Ids(R"({"any_of": [{"country": null},
                                 {"all_of": [{"region": "EMEA"}, {"intent_score": {"gt": 50}}]}]})"),
              ElementsAre(3, 4, 5));
  EXPECT_THAT(Ids(R"({"industry": "Software",
                      "any_of": [{"is_customer": false}, {"employee_count": {"gt": 1000}}]})"),
              ElementsAre(5, 8));
  EXPECT_THAT(Ids(R"({"all_of": [{"any_of": [{"country": "US"}, {"country": "DE"}]},
                                 {"any_of": [{"is_customer": true}, {"annual_revenue": null}]}]})"),
              ElementsAre(1, 2, 4, 8));
}

TEST_F(HandMadeTest, ScanStopsWhenTheCallbackSaysSo) {
  int calls = 0;
  EXPECT_OK(source_->Scan(Accounts(), {"id"}, Condition(), [&](const Row&) {
    ++calls;
    return calls < 3;
  }));
  EXPECT_EQ(calls, 3);
}

TEST_F(HandMadeTest, UnknownFieldsAreInvalidArguments) {
  EXPECT_THAT(
      source_->Scan(Accounts(), {"id", "colour"}, Condition(), [](const Row&) { return true; }),
      StatusIs(absl::StatusCode::kInvalidArgument, "fields[1]: unknown field for accounts"));
}

TEST_F(HandMadeTest, TheSourceDoesNotChangeTheFile) {
  std::ifstream before_file(path_, std::ios::binary);
  const std::string before((std::istreambuf_iterator<char>(before_file)), {});
  Ids(R"({"name": "\"; DROP TABLE accounts; --"})");
  Ids(R"({"any_of": [{"country": null}, {"name": {"contains": "x"}}]})");
  source_.reset();
  std::ifstream after_file(path_, std::ios::binary);
  const std::string after((std::istreambuf_iterator<char>(after_file)), {});
  EXPECT_EQ(before, after);
}

// ---------------------------------------------------------------------------------------------
// Errors.

TEST(SqliteSourceErrorsTest, MissingFileIsNotFoundAndIsNotCreated) {
  TempDir dir;
  const std::string path = dir.path() + "/missing.db";
  EXPECT_THAT(SqliteSource::Open(path),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.db")));
  EXPECT_FALSE(std::ifstream(path).good());
}

TEST(SqliteSourceErrorsTest, NotADatabase) {
  TempDir dir;
  const std::string path = dir.path() + "/notes.txt";
  std::ofstream(path) << "these are not the tables you are looking for, not even close\n"
                      << std::string(200, 'x');
  EXPECT_THAT(SqliteSource::Open(path),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("file is not a database")));
  EXPECT_THAT(SqliteSource::Open(dir.path()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a regular file")));
}

TEST(SqliteSourceErrorsTest, MissingTablesAndColumnsAreUnavailable) {
  TempDir dir;
  const std::string path = dir.path() + "/other.db";
  Exec(path, "CREATE TABLE people (id INTEGER PRIMARY KEY); CREATE TABLE accounts (id INTEGER)");
  ASSERT_OK_AND_ASSIGN(auto source, SqliteSource::Open(path));
  const catalog::Entity& campaigns = EntityNamed("campaigns");
  EXPECT_THAT(source->Scan(campaigns, {"id"}, Condition(), [](const Row&) { return true; }),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no such table: campaigns")));
  EXPECT_THAT(source->Count(campaigns, Condition()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no such table: campaigns")));
  EXPECT_THAT(
      source->Scan(Accounts(), {"id", "name"}, Condition(), [](const Row&) { return true; }),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no such column: name")));
  EXPECT_THAT(source->Count(Accounts(), ParseOrDie(R"({"country": "DE"})", Accounts())),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no such column: country")));
}

TEST(SqliteSourceErrorsTest, AnEmptyFileIsAnEmptyDatabase) {
  TempDir dir;
  const std::string path = dir.path() + "/empty.db";
  std::ofstream(path).flush();
  ASSERT_OK_AND_ASSIGN(auto source, SqliteSource::Open(path));
  EXPECT_THAT(source->Count(Accounts(), Condition()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no such table: accounts")));
}

// ---------------------------------------------------------------------------------------------
// The demo data against an independent evaluation of each condition.

// One record read with a plain SELECT *, each value as SQLite stored it.
using Record = std::map<std::string, Cell>;

std::vector<Record> ReadAll(const std::string& path, std::string_view table) {
  std::vector<Record> records;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* statement = nullptr;
  const std::string sql = Cat("SELECT * FROM ", table, " ORDER BY id");
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr), SQLITE_OK);
  while (sqlite3_step(statement) == SQLITE_ROW) {
    Record record;
    for (int i = 0; i < sqlite3_column_count(statement); ++i) {
      Cell cell;
      switch (sqlite3_column_type(statement, i)) {
        case SQLITE_INTEGER:
          cell = static_cast<int64_t>(sqlite3_column_int64(statement, i));
          break;
        case SQLITE_FLOAT:
          cell = sqlite3_column_double(statement, i);
          break;
        case SQLITE_TEXT:
          cell = std::string(reinterpret_cast<const char*>(sqlite3_column_text(statement, i)),
                             sqlite3_column_bytes(statement, i));
          break;
        default:
          break;
      }
      record[sqlite3_column_name(statement, i)] = std::move(cell);
    }
    records.push_back(std::move(record));
  }
  sqlite3_finalize(statement);
  sqlite3_close(db);
  return records;
}

// <0, 0, >0 comparing a stored value with a literal; nullopt when the value is NULL.
std::optional<int> Compare(const Cell& cell, const Literal& literal) {
  if (std::holds_alternative<std::monostate>(cell)) return std::nullopt;
  const auto order = [](auto a, auto b) { return a < b ? -1 : (b < a ? 1 : 0); };
  if (const auto* text = std::get_if<std::string>(&literal)) {
    return order(std::get<std::string>(cell), *text);
  }
  if (const auto* integer = std::get_if<int64_t>(&literal)) {
    return order(std::get<int64_t>(cell), *integer);
  }
  if (const auto* number = std::get_if<double>(&literal)) {
    const double value = std::holds_alternative<int64_t>(cell)
                             ? static_cast<double>(std::get<int64_t>(cell))
                             : std::get<double>(cell);
    return order(value, *number);
  }
  return order(std::get<int64_t>(cell) != 0, std::get<bool>(literal));
}

// The meaning of a condition, as docs/filters.md states it.
bool Matches(const Condition& condition, const Record& record) {
  switch (condition.kind) {
    case Condition::Kind::kAll:
      return std::all_of(condition.children.begin(), condition.children.end(),
                         [&](const Condition& child) { return Matches(child, record); });
    case Condition::Kind::kAny:
      return std::any_of(condition.children.begin(), condition.children.end(),
                         [&](const Condition& child) { return Matches(child, record); });
    case Condition::Kind::kLeaf:
      break;
  }
  const Cell& cell = record.at(std::string(condition.field->name));
  const bool is_null = std::holds_alternative<std::monostate>(cell);
  const auto& values = condition.values;
  const auto equals_any = [&] {
    return std::any_of(values.begin(), values.end(),
                       [&](const Literal& value) { return Compare(cell, value) == 0; });
  };
  switch (condition.op) {
    case Op::kEq:
      return Compare(cell, values[0]) == 0;
    case Op::kNe:
      return is_null || Compare(cell, values[0]) != 0;
    case Op::kLt:
      return !is_null && *Compare(cell, values[0]) < 0;
    case Op::kLte:
      return !is_null && *Compare(cell, values[0]) <= 0;
    case Op::kGt:
      return !is_null && *Compare(cell, values[0]) > 0;
    case Op::kGte:
      return !is_null && *Compare(cell, values[0]) >= 0;
    case Op::kIn:
      return !is_null && equals_any();
    case Op::kNotIn:
      return is_null || !equals_any();
    case Op::kContains:
      return !is_null && std::get<std::string>(cell).find(std::get<std::string>(values[0])) !=
                             std::string::npos;
    case Op::kStartsWith:
      return !is_null && std::get<std::string>(cell).starts_with(std::get<std::string>(values[0]));
    case Op::kIsNull:
      return is_null == std::get<bool>(values[0]);
    case Op::kBetween:
      return !is_null && *Compare(cell, values[0]) >= 0 && *Compare(cell, values[1]) <= 0;
  }
  return false;
}

class DemoDataQueryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    path_ = new std::string(dir_->path() + "/demo.db");
    DemoDataOptions options;
    options.accounts = 400;
    options.seed = 7;
    const absl::Status generated = GenerateDemoData(*path_, options);
    ASSERT_TRUE(generated.ok()) << generated;
  }

  static void TearDownTestSuite() {
    delete path_;
    delete dir_;
  }

  // Checks every filter of `cases` on `table`: SqliteSource's ids and count equal the ids of
  // the records that Matches(); returns how many filters matched some but not all records.
  static int CheckAgainstReference(std::string_view table,
                                   const std::vector<std::string_view>& cases) {
    const catalog::Entity& entity = EntityNamed(table);
    const std::vector<Record> records = ReadAll(*path_, table);
    EXPECT_GT(records.size(), 0u);
    auto source = SqliteSource::Open(*path_);
    EXPECT_OK(source);
    if (!source.ok()) return 0;
    int selective = 0;
    for (std::string_view json : cases) {
      const Condition condition = ParseOrDie(json, entity);
      std::vector<int64_t> expected;
      for (const Record& record : records) {
        if (Matches(condition, record)) expected.push_back(std::get<int64_t>(record.at("id")));
      }
      std::vector<int64_t> actual;
      EXPECT_OK((*source)->Scan(entity, {"id"}, condition, [&](const Row& row) {
        actual.push_back(std::get<int64_t>(row[0]));
        return true;
      })) << json;
      EXPECT_THAT(actual, ElementsAreArray(expected)) << table << " " << json;
      EXPECT_THAT((*source)->Count(entity, condition),
                  ::exportd::testing::IsOkAndHolds(static_cast<int64_t>(expected.size())))
          << table << " " << json;
      if (!expected.empty() && expected.size() < records.size()) ++selective;
    }
    return selective;
  }

  static TempDir* dir_;
  static std::string* path_;
};

TempDir* DemoDataQueryTest::dir_ = nullptr;
std::string* DemoDataQueryTest::path_ = nullptr;

TEST_F(DemoDataQueryTest, EveryFieldReadsBackAsStored) {
  auto source = SqliteSource::Open(*path_);
  ASSERT_OK(source);
  for (const catalog::Entity& entity : catalog::Entities()) {
    std::vector<std::string> fields;
    for (const catalog::Field& field : entity.fields) fields.emplace_back(field.name);
    std::reverse(fields.begin(), fields.end());
    const std::vector<Record> records = ReadAll(*path_, entity.table);
    size_t index = 0;
    ASSERT_OK((*source)->Scan(entity, fields, Condition(), [&](const Row& row) {
      EXPECT_LT(index, records.size());
      if (index >= records.size()) return false;
      for (size_t i = 0; i < fields.size(); ++i) {
        Cell expected = records[index].at(fields[i]);
        const catalog::Field* field = catalog::FindField(entity, fields[i]);
        if (field->type == catalog::FieldType::FIELD_TYPE_BOOLEAN &&
            std::holds_alternative<int64_t>(expected)) {
          expected = std::get<int64_t>(expected) != 0;
        }
        EXPECT_EQ(row[i], expected) << entity.table << " row " << index << " " << fields[i];
      }
      ++index;
      return true;
    }));
    EXPECT_EQ(index, records.size()) << entity.table;
  }
}

TEST_F(DemoDataQueryTest, Accounts) {
  const int selective = CheckAgainstReference(
      "accounts",
      {
          "{}",
          R"({"country": "DE"})",
          R"({"country": ["DE", "FR", "US"]})",
          R"({"country": {"ne": "US"}})",
          R"({"country": {"not_in": ["US", "GB"]}})",
          R"({"country": null})",
          R"({"industry": {"is_null": false}})",
          R"({"industry": {"not_in": ["Software", "Retail"]}})",
          R"({"employee_count": {"gte": 100, "lt": 5000}})",
          R"({"employee_count": {"between": [50, 500]}})",
          R"({"employee_count": {"ne": 100}})",
          R"({"employee_count": null})",
          R"({"annual_revenue": {"gt": 1e8}})",
          R"({"annual_revenue": {"lte": 5000000}})",
          R"({"intent_score": {"lte": 20.5}})",
          R"({"engagement_score": {"between": [10, 30.5]}})",
          R"({"engagement_score": {"in": [50, 50.5, 99.9]}})",
          R"({"is_customer": true})",
          R"({"is_customer": {"ne": true}})",
          R"({"created_at": {"gte": "2022-01-01", "lt": "2023-06-30T12:00:00+02:00"}})",
          R"({"created_at": {"between": ["2020-01-01T00:00:00Z", "2021-01-01T00:00:00-08:00"]}})",
          R"({"name": {"contains": ","}})",
          R"({"name": {"contains": "\""}})",
          R"({"name": {"contains": "\n"}})",
          R"({"name": {"contains": "'"}})",
          R"({"name": {"starts_with": "Blue"}})",
          R"({"name": {"contains": "logic"}})",
          R"({"name": {"contains": "Logic"}})",
          R"({"domain": {"gt": "m"}})",
          R"({"domain": {"between": ["b", "d"]}})",
          R"({"domain": {"starts_with": "apex"}})",
          R"({"region": {"in": ["EMEA", "APAC"]}})",
          R"({"any_of": [{"country": null}, {"industry": null}]})",
          R"({"any_of": [{"region": "EMEA", "is_customer": true}, {"intent_score": {"gt": 90}}]})",
          R"({"all_of": [{"any_of": [{"country": "US"}, {"employee_count": {"lt": 50}}]},
                         {"any_of": [{"is_customer": false}, {"annual_revenue": null}]}]})",
          R"({"any_of": [{"all_of": [{"region": "APAC"}, {"any_of": [{"industry": "Software"},
                         {"name": {"contains": "Labs"}}]}]}, {"engagement_score": null}]})",
      });
  EXPECT_GE(selective, 30);
}

TEST_F(DemoDataQueryTest, People) {
  const int selective = CheckAgainstReference(
      "people", {
                    R"({"last_name": {"contains": "'"}})",
                    R"({"first_name": ["Zoë", "José", "Søren"]})",
                    R"({"seniority": {"in": ["VP", "C-Level"]}})",
                    R"({"title": {"starts_with": "VP, "}})",
                    R"({"title": null})",
                    R"({"email_opt_out": false})",
                    R"({"email": {"contains": ".com"}, "department": {"ne": "Sales"}})",
                    R"({"account_id": {"between": [10, 20]}})",
                    R"({"country": {"not_in": ["US"]}, "engagement_score": {"gte": 50}})",
                    R"({"created_at": {"lt": "2024-01-01"}})",
                });
  EXPECT_GE(selective, 10);
}

TEST_F(DemoDataQueryTest, Opportunities) {
  const int selective = CheckAgainstReference(
      "opportunities", {
                           R"({"stage": {"not_in": ["Closed Won", "Closed Lost"]}})",
                           R"({"amount": {"gte": 100000}})",
                           R"({"amount": null})",
                           R"({"is_won": true})",
                           R"({"is_closed": {"ne": true}})",
                           R"({"close_date": {"gte": "2026-01-01"}})",
                           R"({"probability": {"between": [20, 60]}})",
                           R"({"name": {"contains": ", "}})",
                           R"({"any_of": [{"is_won": true}, {"probability": {"gte": 80}}]})",
                       });
  EXPECT_GE(selective, 9);
}

TEST_F(DemoDataQueryTest, Activities) {
  const int selective = CheckAgainstReference(
      "activities",
      {
          R"({"subject": {"contains": "%"}})",
          R"({"subject": {"contains": "_"}})",
          R"({"subject": {"starts_with": "Re: \""}})",
          R"({"subject": {"contains": "\n"}})",
          R"({"person_id": null})",
          R"({"type": {"in": ["call", "meeting"]}, "duration_seconds": {"gt": 1800}})",
          R"({"duration_seconds": {"is_null": true}})",
          R"({"occurred_at": {"lt": "2025-01-01"}})",
          R"({"type": "web_visit", "subject": {"starts_with": "/pricing?"}})",
      });
  EXPECT_GE(selective, 9);
}

TEST_F(DemoDataQueryTest, CampaignsAndBuyingGroups) {
  int selective =
      CheckAgainstReference("campaigns", {
                                             R"({"end_date": {"is_null": false}})",
                                             R"({"status": "active"})",
                                             R"({"channel": {"ne": "email"}})",
                                             R"({"impressions": {"gt": 100000}})",
                                             R"({"clicks": null})",
                                             R"({"budget": {"between": [10000, 250000]}})",
                                             R"({"start_date": {"gt": "2024-06-01T00:00:00Z"}})",
                                         });
  selective +=
      CheckAgainstReference("buying_groups", {
                                                 R"({"stage": {"in": ["Decision", "Purchase"]}})",
                                                 R"({"member_count": {"lte": 3}})",
                                                 R"({"engagement_score": {"ne": null}})",
                                                 R"({"name": {"starts_with": "Analytics"}})",
                                             });
  EXPECT_GE(selective, 11);
}

}  // namespace
}  // namespace exportd
