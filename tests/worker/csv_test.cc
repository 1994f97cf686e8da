// Tests for the CSV encoder: quoting by exact expected text, and a round trip of random rows
// with nasty strings through a strict RFC 4180 parser written here.
#include "worker/csv.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace exportd {
namespace {

using ::testing::ElementsAre;

std::string Field(std::string_view value) {
  std::string out;
  csv::AppendField(value, &out);
  return out;
}

std::string CellText(const Cell& cell) {
  std::string out;
  csv::AppendCell(cell, &out);
  return out;
}

std::string Record(const Row& row) {
  std::string out;
  csv::AppendRecord(row, &out);
  return out;
}

// A parsed field: nullopt for an empty unquoted field (NULL), else its text.
using ParsedField = std::optional<std::string>;
using ParsedRecord = std::vector<ParsedField>;

// A strict RFC 4180 parser, as a state machine: records end with CRLF (a bare CR or LF outside
// quotes is an error), a quote may appear only as the first character of a field or doubled
// inside a quoted field, and a closing quote must be followed by a comma or CRLF. The input must
// end with a complete record.
absl::StatusOr<std::vector<ParsedRecord>> ParseCsv(std::string_view input) {
  enum class State { kFieldStart, kUnquoted, kQuoted, kQuoteInQuoted };
  std::vector<ParsedRecord> records;
  ParsedRecord record;
  std::string text;
  bool quoted = false;
  State state = State::kFieldStart;
  auto end_field = [&] {
    if (quoted || !text.empty()) {
      record.push_back(text);
    } else {
      record.push_back(std::nullopt);
    }
    text.clear();
    quoted = false;
    state = State::kFieldStart;
  };
  auto error = [](size_t at, const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("offset ", at, ": ", what));
  };
  for (size_t i = 0; i < input.size(); ++i) {
    const char c = input[i];
    // Handles the separators that may follow a field; returns false for any other character.
    auto separator = [&]() -> absl::StatusOr<bool> {
      if (c == ',') {
        end_field();
        return true;
      }
      if (c == '\r') {
        if (i + 1 >= input.size() || input[i + 1] != '\n') return error(i, "CR without LF");
        ++i;
        end_field();
        records.push_back(std::move(record));
        record.clear();
        return true;
      }
      if (c == '\n') return error(i, "LF without CR");
      return false;
    };
    switch (state) {
      case State::kFieldStart: {
        if (c == '"') {
          quoted = true;
          state = State::kQuoted;
          break;
        }
        absl::StatusOr<bool> handled = separator();
        if (!handled.ok()) return handled.status();
        if (!*handled) {
          text.push_back(c);
          state = State::kUnquoted;
        }
        break;
      }
      case State::kUnquoted: {
        if (c == '"') return error(i, "quote in an unquoted field");
        absl::StatusOr<bool> handled = separator();
        if (!handled.ok()) return handled.status();
        if (!*handled) text.push_back(c);
        break;
      }
      case State::kQuoted:
        if (c == '"') {
          state = State::kQuoteInQuoted;
        } else {
          text.push_back(c);
        }
        break;
      case State::kQuoteInQuoted: {
        if (c == '"') {
          text.push_back('"');
          state = State::kQuoted;
          break;
        }
        absl::StatusOr<bool> handled = separator();
        if (!handled.ok()) return handled.status();
        if (!*handled) return error(i, "character after a closing quote");
        break;
      }
    }
  }
  if (state != State::kFieldStart || !record.empty() || quoted || !text.empty()) {
    return absl::InvalidArgumentError("input ends inside a record");
  }
  return records;
}

// The parser itself must be strict, or the round trip below proves nothing.
TEST(CsvParserTest, RejectsMalformedInput) {
  EXPECT_FALSE(ParseCsv("a,b\n").ok());
  EXPECT_FALSE(ParseCsv("a,b\r").ok());
  EXPECT_FALSE(ParseCsv("a\"b\r\n").ok());
  EXPECT_FALSE(ParseCsv("\"a\"b\r\n").ok());
  EXPECT_FALSE(ParseCsv("\"a\r\n").ok());
  EXPECT_FALSE(ParseCsv("a,b").ok());
  EXPECT_FALSE(ParseCsv("a,a b\nc\r\n").ok());
}

TEST(CsvParserTest, ParsesQuotedAndNullFields) {
  ASSERT_OK_AND_ASSIGN(std::vector<ParsedRecord> records,
                       ParseCsv("a,,\"\",\"x,\"\"y\"\"\r\nz\"\"\"\r\n\r\n"));
  ASSERT_EQ(records.size(), 2u);
  EXPECT_THAT(records[0], ElementsAre("a", std::nullopt, "", "x,\"y\"\r\nz\""));
  EXPECT_THAT(records[1], ElementsAre(std::nullopt));
}

TEST(CsvFieldTest, PlainTextIsNotQuoted) {
  EXPECT_EQ(Field("hello"), "hello");
  EXPECT_EQ(Field("two words"), "two words");
  EXPECT_EQ(Field("semi;colon"), "semi;colon");
  EXPECT_EQ(Field("caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC"), "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC");
  EXPECT_EQ(Field("it's"), "it's");
}

TEST(CsvFieldTest, CommaIsQuoted) { EXPECT_EQ(Field("a,b"), "\"a,b\""); }

TEST(CsvFieldTest, QuotesAreDoubledInsideQuotes) {
  EXPECT_EQ(Field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(Field("\""), "\"\"\"\"");
  EXPECT_EQ(Field("\"\""), "\"\"\"\"\"\"");
}

TEST(CsvFieldTest, CarriageReturnIsQuoted) { EXPECT_EQ(Field("a\rb"), "\"a\rb\""); }

TEST(CsvFieldTest, LineFeedIsQuoted) { EXPECT_EQ(Field("a\nb"), "\"a\nb\""); }

TEST(CsvFieldTest, CrLfIsQuoted) { EXPECT_EQ(Field("line 1\r\nline 2"), "\"line 1\r\nline 2\""); }

TEST(CsvFieldTest, LeadingAndTrailingBlanksAreQuoted) {
  EXPECT_EQ(Field(" a"), "\" a\"");
  EXPECT_EQ(Field("a "), "\"a \"");
  EXPECT_EQ(Field(" "), "\" \"");
  EXPECT_EQ(Field("\ta"), "\"\ta\"");
}

TEST(CsvFieldTest, EmptyStringIsQuotedAndNullIsEmpty) {
  EXPECT_EQ(CellText(std::string()), "\"\"");
  EXPECT_EQ(CellText(std::monostate()), "");
  EXPECT_EQ(Record({std::monostate(), std::string(), std::string("x"), std::monostate()}),
            ",\"\",x,\r\n");
}

TEST(CsvCellTest, Booleans) {
  EXPECT_EQ(CellText(true), "true");
  EXPECT_EQ(CellText(false), "false");
}

TEST(CsvCellTest, Integers) {
  EXPECT_EQ(CellText(int64_t{0}), "0");
  EXPECT_EQ(CellText(int64_t{-42}), "-42");
  EXPECT_EQ(CellText(std::numeric_limits<int64_t>::max()), "9223372036854775807");
  EXPECT_EQ(CellText(std::numeric_limits<int64_t>::min()), "-9223372036854775808");
}

TEST(CsvCellTest, NumbersAreShortest) {
  EXPECT_EQ(CellText(12.5), "12.5");
  EXPECT_EQ(CellText(0.1), "0.1");
  EXPECT_EQ(CellText(3.0), "3");
  EXPECT_EQ(CellText(-0.0), "-0");
  EXPECT_EQ(CellText(1234567.891), "1234567.891");
  EXPECT_EQ(CellText(1e300), "1e+300");
  EXPECT_EQ(CellText(0.1 + 0.2), "0.30000000000000004");
}

TEST(CsvCellTest, NonFiniteNumbers) {
  EXPECT_EQ(CellText(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(CellText(std::numeric_limits<double>::infinity()), "Infinity");
  EXPECT_EQ(CellText(-std::numeric_limits<double>::infinity()), "-Infinity");
}

TEST(CsvCellTest, NumbersRoundTrip) {
  std::mt19937_64 random(20240131);
  for (int i = 0; i < 10000; ++i) {
    const double value = std::bit_cast<double>(random());
    if (!std::isfinite(value)) continue;
    const std::string text = CellText(value);
    EXPECT_EQ(std::bit_cast<uint64_t>(std::strtod(text.c_str(), nullptr)),
              std::bit_cast<uint64_t>(value))
        << text;
  }
}

TEST(CsvCellTest, TimestampsAsGiven) {
  EXPECT_EQ(CellText(std::string("2026-01-31T09:30:00Z")), "2026-01-31T09:30:00Z");
}

TEST(CsvRecordTest, HeaderQuotesNames) {
  std::string out;
  csv::AppendHeader({{"id", catalog::FieldType::FIELD_TYPE_INTEGER},
                     {"name, full", catalog::FieldType::FIELD_TYPE_STRING}},
                    &out);
  EXPECT_EQ(out, "id,\"name, full\"\r\n");
}

TEST(CsvRecordTest, MixedRecord) {
  EXPECT_EQ(Record({int64_t{7}, std::string("Acme, Inc."), 12.5, true, std::monostate(),
                    std::string("2026-01-31T09:30:00Z")}),
            "7,\"Acme, Inc.\",12.5,true,,2026-01-31T09:30:00Z\r\n");
}

// A random string over characters that trouble CSV writers.
std::string NastyString(std::mt19937& random) {
  static const std::vector<std::string> kPieces = {"a",
                                                   "Z",
                                                   " ",
                                                   ",",
                                                   "\"",
                                                   "\"\"",
                                                   "\r",
                                                   "\n",
                                                   "\r\n",
                                                   "\t",
                                                   std::string(1, '\0'),
                                                   ";",
                                                   "'",
                                                   "\\",
                                                   "\xC3\xA9",
                                                   "\xF0\x9F\x98\x80",
                                                   "\xFF",
                                                   "=",
                                                   "x y"};
  const int length = std::uniform_int_distribution<int>(0, 12)(random);
  std::string value;
  for (int i = 0; i < length; ++i) {
    value += kPieces[std::uniform_int_distribution<size_t>(0, kPieces.size() - 1)(random)];
  }
  return value;
}

Cell RandomCell(std::mt19937& random) {
  switch (std::uniform_int_distribution<int>(0, 5)(random)) {
    case 0:
      return std::monostate();
    case 1:
      return static_cast<int64_t>(std::uniform_int_distribution<uint64_t>()(random));
    case 2:
      return std::uniform_real_distribution<double>(-1e9, 1e9)(random);
    case 3:
      return std::uniform_int_distribution<int>(0, 1)(random) == 1;
    default:
      return NastyString(random);
  }
}

// What the parser should give back for `cell`.
ParsedField Expected(const Cell& cell) {
  if (std::holds_alternative<std::monostate>(cell)) return std::nullopt;
  if (const auto* text = std::get_if<std::string>(&cell)) return *text;
  if (const auto* integer = std::get_if<int64_t>(&cell)) return absl::StrCat(*integer);
  if (const auto* boolean = std::get_if<bool>(&cell)) return *boolean ? "true" : "false";
  return std::nullopt;  // Numbers are compared by value.
}

TEST(CsvRoundTripTest, RandomRowsWithNastyStringsParseBack) {
  std::mt19937 random(4180);
  constexpr int kColumns = 6;
  std::vector<Column> columns;
  for (int i = 0; i < kColumns; ++i) {
    std::string name = NastyString(random);
    if (name.empty()) name = "c";  // Column names are never empty.
    columns.push_back({name, catalog::FieldType::FIELD_TYPE_STRING});
  }
  std::vector<Row> rows;
  std::string file;
  csv::AppendHeader(columns, &file);
  for (int i = 0; i < 2000; ++i) {
    Row row;
    for (int j = 0; j < kColumns; ++j) row.push_back(RandomCell(random));
    csv::AppendRecord(row, &file);
    rows.push_back(std::move(row));
  }

  ASSERT_OK_AND_ASSIGN(std::vector<ParsedRecord> records, ParseCsv(file));
  ASSERT_EQ(records.size(), rows.size() + 1);
  ASSERT_EQ(records[0].size(), columns.size());
  for (int j = 0; j < kColumns; ++j) EXPECT_EQ(records[0][j], columns[j].name);
  for (size_t i = 0; i < rows.size(); ++i) {
    ASSERT_EQ(records[i + 1].size(), rows[i].size()) << "record " << i;
    for (int j = 0; j < kColumns; ++j) {
      const Cell& cell = rows[i][j];
      const ParsedField& parsed = records[i + 1][j];
      if (const auto* number = std::get_if<double>(&cell)) {
        ASSERT_TRUE(parsed.has_value());
        EXPECT_EQ(std::strtod(parsed->c_str(), nullptr), *number) << *parsed;
      } else {
        EXPECT_EQ(parsed, Expected(cell)) << "record " << i << " field " << j;
      }
    }
  }
}

}  // namespace
}  // namespace exportd
