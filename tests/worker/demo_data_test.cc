// GenerateDemoData: sizes, determinism, schema, referential integrity and the shape of values.
#include "worker/demo_data.h"

#include <sqlite3.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/catalog.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"
#include "worker/sqlite_source.h"

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
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

// A read-only connection for checking a generated database with plain SQL.
class Db {
 public:
  explicit Db(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  }
  ~Db() { sqlite3_close(db_); }

  // The first column of every row of `sql`, as text ("NULL" for NULL).
  std::vector<std::string> Column(const std::string& sql) const {
    std::vector<std::string> values;
    sqlite3_stmt* statement = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db_);
    while (sqlite3_step(statement) == SQLITE_ROW) {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
      values.emplace_back(text == nullptr ? "NULL" : text);
    }
    sqlite3_finalize(statement);
    return values;
  }

  // The single integer `sql` returns.
  int64_t Int(const std::string& sql) const {
    const std::vector<std::string> values = Column(sql);
    EXPECT_EQ(values.size(), 1u) << sql;
    return values.empty() ? -1 : std::stoll(values[0]);
  }

  // Every row of `table`, every column tagged with its storage type, one line per row.
  std::string Dump(std::string_view table) const {
    std::string dump;
    sqlite3_stmt* statement = nullptr;
    const std::string sql = Cat("SELECT * FROM ", table, " ORDER BY id");
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr), SQLITE_OK);
    while (sqlite3_step(statement) == SQLITE_ROW) {
      for (int i = 0; i < sqlite3_column_count(statement); ++i) {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, i));
        dump += Cat(sqlite3_column_type(statement, i), ":", text == nullptr ? "" : text, "|");
      }
      dump += "\n";
    }
    sqlite3_finalize(statement);
    return dump;
  }

 private:
  sqlite3* db_ = nullptr;
};

class DemoDataTest : public ::testing::Test {
 protected:
  std::string Path(std::string_view name) const { return Cat(dir_.path(), "/", name); }

  TempDir dir_;
};

TEST_F(DemoDataTest, DefaultSizes) {
  DemoDataOptions options;
  options.accounts = 200;
  const DemoDataSizes sizes = DemoSizes(options);
  EXPECT_EQ(sizes.accounts, 200);
  EXPECT_EQ(sizes.people, 1000);
  EXPECT_EQ(sizes.opportunities, 400);
  EXPECT_EQ(sizes.activities, 4000);
  EXPECT_EQ(sizes.campaigns, 12);
  EXPECT_EQ(sizes.buying_groups, 200);

  ASSERT_OK(GenerateDemoData(Path("demo.db"), options));
  Db db(Path("demo.db"));
  EXPECT_EQ(db.Int("SELECT count(*) FROM accounts"), 200);
  EXPECT_EQ(db.Int("SELECT count(*) FROM people"), 1000);
  EXPECT_EQ(db.Int("SELECT count(*) FROM opportunities"), 400);
  EXPECT_EQ(db.Int("SELECT count(*) FROM activities"), 4000);
  EXPECT_EQ(db.Int("SELECT count(*) FROM campaigns"), 12);
  EXPECT_EQ(db.Int("SELECT count(*) FROM buying_groups"), 200);
  // Ids are 1..n.
  for (const catalog::Entity& entity : catalog::Entities()) {
    EXPECT_EQ(db.Int(Cat("SELECT count(*) FROM ", entity.table)),
              db.Int(Cat("SELECT max(id) FROM ", entity.table)))
        << entity.table;
  }
}

TEST_F(DemoDataTest, ChosenSizes) {
  DemoDataOptions options;
  options.accounts = 50;
  options.people_per_account = 2.5;
  options.opportunities_per_account = 0;
  options.activities_per_account = 3.3;
  options.buying_groups_per_account = 0.5;
  options.campaigns = 3;
  ASSERT_OK(GenerateDemoData(Path("demo.db"), options));
  Db db(Path("demo.db"));
  EXPECT_EQ(db.Int("SELECT count(*) FROM accounts"), 50);
  EXPECT_EQ(db.Int("SELECT count(*) FROM people"), 125);
  EXPECT_EQ(db.Int("SELECT count(*) FROM opportunities"), 0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM activities"), 165);
  EXPECT_EQ(db.Int("SELECT count(*) FROM campaigns"), 3);
  EXPECT_EQ(db.Int("SELECT count(*) FROM buying_groups"), 25);
}

TEST_F(DemoDataTest, NoAccounts) {
  DemoDataOptions options;
  options.accounts = 0;
  ASSERT_OK(GenerateDemoData(Path("demo.db"), options));
  Db db(Path("demo.db"));
  EXPECT_EQ(db.Int("SELECT count(*) FROM accounts"), 0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM activities"), 0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM campaigns"), 10);
}

TEST_F(DemoDataTest, SameOptionsGiveIdenticalDatabases) {
  DemoDataOptions options;
  options.accounts = 300;
  ASSERT_OK(GenerateDemoData(Path("a.db"), options));
  ASSERT_OK(GenerateDemoData(Path("b.db"), options));
  const std::string a = ReadFile(Path("a.db"));
  EXPECT_GT(a.size(), 100'000u);
  EXPECT_TRUE(a == ReadFile(Path("b.db"))) << "the two files differ";
  Db db_a(Path("a.db"));
  Db db_b(Path("b.db"));
  for (const catalog::Entity& entity : catalog::Entities()) {
    EXPECT_EQ(db_a.Dump(entity.table), db_b.Dump(entity.table)) << entity.table;
  }
}

TEST_F(DemoDataTest, OtherSeedsGiveOtherData) {
  DemoDataOptions options;
  options.accounts = 100;
  ASSERT_OK(GenerateDemoData(Path("a.db"), options));
  options.seed = 2;
  ASSERT_OK(GenerateDemoData(Path("b.db"), options));
  Db db_a(Path("a.db"));
  Db db_b(Path("b.db"));
  for (const catalog::Entity& entity : catalog::Entities()) {
    EXPECT_NE(db_a.Dump(entity.table), db_b.Dump(entity.table)) << entity.table;
  }
}

TEST_F(DemoDataTest, TablesDoNotDependOnTheSizeOfOthers) {
  DemoDataOptions options;
  options.accounts = 100;
  ASSERT_OK(GenerateDemoData(Path("a.db"), options));
  options.activities_per_account = 3;
  options.opportunities_per_account = 7;
  ASSERT_OK(GenerateDemoData(Path("b.db"), options));
  Db db_a(Path("a.db"));
  Db db_b(Path("b.db"));
  for (std::string_view table : {"accounts", "people", "campaigns", "buying_groups"}) {
    EXPECT_EQ(db_a.Dump(table), db_b.Dump(table)) << table;
  }
}

TEST_F(DemoDataTest, SchemaFollowsTheCatalog) {
  DemoDataOptions options;
  options.accounts = 10;
  ASSERT_OK(GenerateDemoData(Path("demo.db"), options));
  Db db(Path("demo.db"));
  for (const catalog::Entity& entity : catalog::Entities()) {
    std::vector<std::string> expected;
    bool has_account_id = false;
    for (const catalog::Field& field : entity.fields) {
      std::string_view type = "TEXT";
      if (field.type == catalog::FieldType::FIELD_TYPE_INTEGER ||
          field.type == catalog::FieldType::FIELD_TYPE_BOOLEAN) {
        type = "INTEGER";
      } else if (field.type == catalog::FieldType::FIELD_TYPE_NUMBER) {
        type = "REAL";
      }
      expected.push_back(Cat(field.name, " ", type, field.name == "id" ? " pk" : ""));
      has_account_id = has_account_id || field.name == "account_id";
    }
    EXPECT_EQ(db.Column(Cat("SELECT name || ' ' || type || "
                            "CASE pk WHEN 1 THEN ' pk' ELSE '' END "
                            "FROM pragma_table_info('",
                            entity.table, "') ORDER BY cid")),
              expected)
        << entity.table;
    const std::vector<std::string> indexed =
        db.Column(Cat("SELECT ii.name FROM pragma_index_list('", entity.table,
                      "') AS il, pragma_index_info(il.name) AS ii"));
    if (has_account_id) {
      EXPECT_EQ(indexed, std::vector<std::string>{"account_id"}) << entity.table;
    } else {
      EXPECT_TRUE(indexed.empty()) << entity.table;
    }
  }
}

TEST_F(DemoDataTest, ReferencesResolve) {
  DemoDataOptions options;
  options.accounts = 300;
  ASSERT_OK(GenerateDemoData(Path("demo.db"), options));
  Db db(Path("demo.db"));
  for (std::string_view table : {"people", "opportunities", "activities", "buying_groups"}) {
    EXPECT_EQ(db.Int(Cat("SELECT count(*) FROM ", table,
                         " WHERE account_id IS NULL OR account_id NOT IN "
                         "(SELECT id FROM accounts)")),
              0)
        << table;
  }
  // An activity's person belongs to the activity's account.
  EXPECT_EQ(db.Int("SELECT count(*) FROM activities a LEFT JOIN people p ON p.id = a.person_id "
                   "WHERE a.person_id IS NOT NULL AND "
                   "(p.id IS NULL OR p.account_id != a.account_id)"),
            0);
  EXPECT_GT(db.Int("SELECT count(*) FROM activities WHERE person_id IS NOT NULL"), 3000);
  // People's emails are on their account's domain, and unique.
  EXPECT_EQ(db.Int("SELECT count(*) FROM people p JOIN accounts a ON a.id = p.account_id "
                   "WHERE p.email NOT LIKE '%_@' || a.domain"),
            0);
  EXPECT_EQ(db.Int("SELECT count(DISTINCT email) FROM people"),
            db.Int("SELECT count(*) FROM people"));
  EXPECT_EQ(db.Int("SELECT count(DISTINCT domain) FROM accounts"), 300);
  // Most accounts have people; counts vary.
  EXPECT_GT(db.Int("SELECT count(DISTINCT account_id) FROM people"), 250);
  EXPECT_GT(db.Int("SELECT max(n) FROM (SELECT count(*) AS n FROM people GROUP BY account_id)"), 8);
}

TEST_F(DemoDataTest, ValuesAreWellFormed) {
  DemoDataOptions options;
  options.accounts = 2000;
  ASSERT_OK(GenerateDemoData(Path("demo.db"), options));
  Db db(Path("demo.db"));
  const std::string kTimestamp =
      "'[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z'";
  const std::string kNow = "'2026-01-01T00:00:00Z'";
  const std::pair<std::string_view, std::string_view> timestamps[] = {
      {"accounts", "created_at"},      {"people", "created_at"},
      {"opportunities", "close_date"}, {"opportunities", "created_at"},
      {"activities", "occurred_at"},   {"campaigns", "start_date"},
      {"campaigns", "end_date"},       {"buying_groups", "created_at"},
  };
  for (const auto& [table, column] : timestamps) {
    EXPECT_EQ(
        db.Int(Cat("SELECT count(*) FROM ", table, " WHERE ", column, " IS NOT NULL AND (typeof(",
                   column, ") != 'text' OR ", column, " NOT GLOB ", kTimestamp, ")")),
        0)
        << table << "." << column;
  }
  for (std::string_view table : {"accounts", "people", "opportunities", "buying_groups"}) {
    EXPECT_EQ(db.Int(Cat("SELECT count(*) FROM ", table, " WHERE created_at >= ", kNow)), 0)
        << table;
  }
  EXPECT_EQ(db.Int("SELECT count(*) FROM activities WHERE occurred_at > " + kNow), 0);

  // Accounts.
  EXPECT_EQ(db.Int("SELECT count(*) FROM accounts WHERE region IS NOT CASE "
                   "WHEN country IN ('US','CA','BR','MX') THEN 'AMER' "
                   "WHEN country IN ('JP','AU','IN','SG','KR','NZ') THEN 'APAC' "
                   "WHEN country IS NULL THEN NULL ELSE 'EMEA' END"),
            0);
  EXPECT_EQ(db.Int("SELECT count(DISTINCT region) FROM accounts"), 3);
  EXPECT_GE(db.Int("SELECT count(DISTINCT country) FROM accounts"), 15);
  EXPECT_GE(db.Int("SELECT count(DISTINCT industry) FROM accounts"), 10);
  EXPECT_EQ(db.Int("SELECT count(*) FROM accounts WHERE intent_score NOT BETWEEN 0 AND 100 "
                   "OR engagement_score NOT BETWEEN 0 AND 100"),
            0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM accounts WHERE employee_count < 1 "
                   "OR annual_revenue <= 0 OR is_customer NOT IN (0, 1)"),
            0);
  EXPECT_GT(db.Int("SELECT count(*) FROM accounts WHERE employee_count > 10000"), 0);
  EXPECT_GT(db.Int("SELECT count(*) FROM accounts WHERE employee_count < 50"), 0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM accounts WHERE typeof(intent_score) NOT IN "
                   "('real', 'null') OR typeof(annual_revenue) NOT IN ('real', 'null')"),
            0);

  // People.
  EXPECT_EQ(db.Int("SELECT count(*) FROM people WHERE seniority NOT IN "
                   "('C-Level', 'VP', 'Director', 'Manager', 'Individual')"),
            0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM people WHERE email_opt_out NOT IN (0, 1) "
                   "OR engagement_score NOT BETWEEN 0 AND 100"),
            0);
  EXPECT_GE(db.Int("SELECT count(DISTINCT department) FROM people"), 8);
  EXPECT_GT(db.Int("SELECT count(*) FROM people WHERE title LIKE 'VP, %'"), 0);

  // Opportunities: stage, probability and the flags agree; open ones close after "now".
  EXPECT_EQ(db.Int("SELECT count(*) FROM opportunities WHERE "
                   "is_closed != (stage LIKE 'Closed %') OR is_won != (stage = 'Closed Won') "
                   "OR probability NOT BETWEEN 0 AND 100 "
                   "OR (stage = 'Closed Won') != (probability = 100)"),
            0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM opportunities WHERE (is_closed = 1) != "
                   "(close_date < " +
                   kNow + ") OR substr(close_date, 11) != 'T00:00:00Z'"),
            0);
  EXPECT_EQ(db.Int("SELECT count(DISTINCT stage) FROM opportunities"), 7);
  EXPECT_EQ(db.Int("SELECT count(*) FROM opportunities WHERE amount <= 0 OR created_at > "
                   "close_date"),
            0);

  // Activities: durations only where they make sense.
  EXPECT_EQ(db.Int("SELECT count(*) FROM activities WHERE type NOT IN "
                   "('email', 'call', 'meeting', 'web_visit', 'form_fill')"),
            0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM activities WHERE "
                   "(duration_seconds IS NULL) != (type IN ('email', 'form_fill'))"),
            0);

  // Campaigns: the status follows the dates.
  EXPECT_EQ(db.Int("SELECT count(*) FROM campaigns WHERE channel NOT IN "
                   "('display', 'email', 'social', 'search', 'events')"),
            0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM campaigns WHERE status IS NOT CASE "
                   "WHEN start_date > " +
                   kNow +
                   " THEN 'planned' "
                   "WHEN end_date < " +
                   kNow + " THEN 'completed' ELSE 'active' END"),
            0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM campaigns WHERE end_date <= start_date "
                   "OR clicks > impressions OR conversions > clicks OR budget <= 0"),
            0);
  EXPECT_EQ(db.Int("SELECT count(*) FROM campaigns WHERE (status = 'planned') != "
                   "(impressions IS NULL)"),
            0);

  // Buying groups.
  EXPECT_EQ(db.Int("SELECT count(*) FROM buying_groups WHERE member_count NOT BETWEEN 2 AND 12 "
                   "OR stage NOT IN ('Awareness', 'Interest', 'Consideration', 'Evaluation', "
                   "'Decision', 'Purchase')"),
            0);
}

TEST_F(DemoDataTest, SomeValuesNeedCsvQuotingOrAreNull) {
  DemoDataOptions options;
  options.accounts = 2000;
  ASSERT_OK(GenerateDemoData(Path("demo.db"), options));
  Db db(Path("demo.db"));
  const std::pair<std::string_view, std::string_view> present[] = {
      {"accounts", "instr(name, ',') > 0"},
      {"accounts", "instr(name, '\"') > 0"},
      {"accounts", "instr(name, char(10)) > 0"},
      {"accounts", "instr(name, '''') > 0"},
      {"opportunities", "instr(name, ',') > 0"},
      {"people", "instr(last_name, '''') > 0"},
      // Non-ASCII letters: more bytes than characters.
      {"people", "length(first_name) != length(CAST(first_name AS BLOB))"},
      {"activities", "instr(subject, char(10)) > 0"},
      {"activities", "instr(subject, '\"') > 0"},
      {"activities", "instr(subject, '%') > 0"},
      {"activities", "instr(subject, '_') > 0"},
      {"accounts", "industry IS NULL"},
      {"accounts", "country IS NULL"},
      {"accounts", "employee_count IS NULL"},
      {"accounts", "annual_revenue IS NULL"},
      {"accounts", "intent_score IS NULL"},
      {"people", "title IS NULL"},
      {"people", "country IS NULL"},
      {"opportunities", "amount IS NULL"},
      {"activities", "person_id IS NULL"},
      {"activities", "subject IS NULL"},
      {"buying_groups", "engagement_score IS NULL"},
      {"campaigns", "end_date IS NULL OR impressions IS NULL"},
  };
  for (const auto& [table, condition] : present) {
    EXPECT_GT(db.Int(Cat("SELECT count(*) FROM ", table, " WHERE ", condition)), 0)
        << table << ": " << condition;
  }
}

TEST_F(DemoDataTest, TheResultOpensAsASource) {
  DemoDataOptions options;
  options.accounts = 20;
  ASSERT_OK(GenerateDemoData(Path("demo.db"), options));
  ASSERT_OK_AND_ASSIGN(auto source, SqliteSource::Open(Path("demo.db")));
  for (const catalog::Entity& entity : catalog::Entities()) {
    EXPECT_THAT(source->Count(entity, filters::Condition()), ::exportd::testing::IsOk())
        << entity.table;
  }
}

TEST_F(DemoDataTest, AnExistingFileIsKeptUnlessOverwriteIsSet) {
  const std::string path = Path("demo.db");
  std::ofstream(path) << "precious";
  DemoDataOptions options;
  options.accounts = 10;
  EXPECT_THAT(GenerateDemoData(path, options),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("already exists")));
  EXPECT_EQ(ReadFile(path), "precious");
  options.overwrite = true;
  ASSERT_OK(GenerateDemoData(path, options));
  EXPECT_EQ(Db(path).Int("SELECT count(*) FROM accounts"), 10);
  EXPECT_FALSE(Exists(path + ".tmp"));
}

TEST_F(DemoDataTest, LeftoverTemporaryFileIsReplaced) {
  const std::string path = Path("demo.db");
  std::ofstream(path + ".tmp") << "half-written by a crashed run";
  DemoDataOptions options;
  options.accounts = 10;
  ASSERT_OK(GenerateDemoData(path, options));
  EXPECT_EQ(Db(path).Int("SELECT count(*) FROM accounts"), 10);
  EXPECT_FALSE(Exists(path + ".tmp"));
}

TEST_F(DemoDataTest, InvalidOptions) {
  const auto invalid = [&](auto change) {
    DemoDataOptions options;
    change(options);
    return GenerateDemoData(Path("demo.db"), options);
  };
  EXPECT_THAT(invalid([](DemoDataOptions& o) { o.accounts = -1; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("accounts")));
  EXPECT_THAT(invalid([](DemoDataOptions& o) { o.accounts = 10'000'001; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("accounts")));
  EXPECT_THAT(invalid([](DemoDataOptions& o) { o.people_per_account = -1; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("people_per_account")));
  EXPECT_THAT(invalid([](DemoDataOptions& o) { o.activities_per_account = std::nan(""); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("activities_per_account")));
  EXPECT_THAT(invalid([](DemoDataOptions& o) { o.campaigns = -2; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("campaigns")));
  EXPECT_FALSE(Exists(Path("demo.db")));
}

TEST_F(DemoDataTest, UnwritableDirectoryIsUnavailable) {
  DemoDataOptions options;
  options.accounts = 1;
  EXPECT_THAT(GenerateDemoData(Path("no/such/dir/demo.db"), options),
              StatusIs(absl::StatusCode::kUnavailable));
}

// The size the README quotes; run with --gtest_also_run_disabled_tests.
TEST_F(DemoDataTest, DISABLED_HundredThousandAccounts) {
  DemoDataOptions options;
  options.accounts = 100'000;
  const absl::Time start = absl::Now();
  ASSERT_OK(GenerateDemoData(Path("demo.db"), options));
  const absl::Duration took = absl::Now() - start;
  Db db(Path("demo.db"));
  EXPECT_EQ(db.Int("SELECT count(*) FROM activities"), 2'000'000);
  std::cout << "100,000 accounts (2.9 million rows) in " << took << ", "
            << ReadFile(Path("demo.db")).size() / (1 << 20) << " MiB\n";
}

}  // namespace
}  // namespace exportd
