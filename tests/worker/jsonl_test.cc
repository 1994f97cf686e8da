// Tests for the JSON Lines encoder: escaping by exact expected text, and a round trip of random
// rows through a strict minimal JSON parser written here (which also rejects ill-formed UTF-8).
#include "worker/jsonl.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace exportd {
namespace {

std::string JsonString(std::string_view value) {
  std::string out;
  jsonl::AppendString(value, &out);
  return out;
}

std::string JsonCell(const Cell& cell) {
  std::string out;
  jsonl::AppendCell(cell, &out);
  return out;
}

TEST(JsonStringTest, PlainText) {
  EXPECT_EQ(JsonString(""), "\"\"");
  EXPECT_EQ(JsonString("hello, world"), "\"hello, world\"");
  EXPECT_EQ(JsonString("a/b"), "\"a/b\"");
  EXPECT_EQ(JsonString("\x7F"), "\"\x7F\"");
}

TEST(JsonStringTest, QuotesAndBackslashes) {
  EXPECT_EQ(JsonString("say \"hi\""), R"("say \"hi\"")");
  EXPECT_EQ(JsonString("C:\\dir\\"), R"("C:\\dir\\")");
  EXPECT_EQ(JsonString("\\\""), R"("\\\"")");
}

TEST(JsonStringTest, EveryControlCharacterIsEscaped) {
  for (int c = 0; c < 0x20; ++c) {
    std::string expected;
    switch (c) {
      case '\n':
        expected = R"("\n")";
        break;
      case '\r':
        expected = R"("\r")";
        break;
      case '\t':
        expected = R"("\t")";
        break;
      default:
        expected = absl::StrFormat("\"\\u%04x\"", c);
    }
    EXPECT_EQ(JsonString(std::string(1, static_cast<char>(c))), expected) << "character " << c;
  }
  EXPECT_EQ(JsonString(std::string("a\0b\x1f", 4)), R"("a\u0000b\u001f")");
}

TEST(JsonStringTest, Utf8PassesThrough) {
  EXPECT_EQ(JsonString("caf\xC3\xA9"), "\"caf\xC3\xA9\"");                            // 2 bytes.
  EXPECT_EQ(JsonString("\xE6\x97\xA5\xE6\x9C\xAC"), "\"\xE6\x97\xA5\xE6\x9C\xAC\"");  // 3 bytes.
  EXPECT_EQ(JsonString("\xF0\x9F\x98\x80"), "\"\xF0\x9F\x98\x80\"");                  // 4 bytes.
  EXPECT_EQ(JsonString("\xE2\x80\xA8"), "\"\xE2\x80\xA8\"");                          // U+2028.
  EXPECT_EQ(JsonString("\xEF\xBF\xBF\xF4\x8F\xBF\xBF"), "\"\xEF\xBF\xBF\xF4\x8F\xBF\xBF\"");
}

// U+FFFD, once per maximal subpart of an ill-formed sequence (Unicode, section 3.9).
constexpr char kFffd[] = "\xEF\xBF\xBD";

TEST(JsonStringTest, IllFormedUtf8BecomesReplacementCharacters) {
  const std::string r = kFffd;
  EXPECT_EQ(JsonString("\x80"), "\"" + r + "\"");                  // Lone continuation.
  EXPECT_EQ(JsonString("a\xC3"), "\"a" + r + "\"");                // Truncated at the end.
  EXPECT_EQ(JsonString("\xE2\x82x"), "\"" + r + "x\"");            // Truncated, one subpart.
  EXPECT_EQ(JsonString("\xF0\x9F\x98"), "\"" + r + "\"");          // Truncated 4-byte form.
  EXPECT_EQ(JsonString("\xC0\xAF"), "\"" + r + r + "\"");          // Overlong '/'.
  EXPECT_EQ(JsonString("\xE0\x80\xAF"), "\"" + r + r + r + "\"");  // Overlong '/'.
  EXPECT_EQ(JsonString("\xED\xA0\x80"), "\"" + r + r + r + "\"");  // Surrogate D800.
  EXPECT_EQ(JsonString("\xF4\x90\x80\x80"), "\"" + r + r + r + r + "\"");  // Above U+10FFFF.
  EXPECT_EQ(JsonString("\xF5\xFF"), "\"" + r + r + "\"");
  EXPECT_EQ(JsonString("\xC3\"\\"), "\"" + r + "\\\"\\\\\"");  // Escapes still apply after.
}

TEST(JsonCellTest, Scalars) {
  EXPECT_EQ(JsonCell(std::monostate()), "null");
  EXPECT_EQ(JsonCell(true), "true");
  EXPECT_EQ(JsonCell(false), "false");
  EXPECT_EQ(JsonCell(std::string("2026-01-31T09:30:00Z")), "\"2026-01-31T09:30:00Z\"");
}

TEST(JsonCellTest, Integers) {
  EXPECT_EQ(JsonCell(int64_t{0}), "0");
  EXPECT_EQ(JsonCell(int64_t{-17}), "-17");
  EXPECT_EQ(JsonCell(std::numeric_limits<int64_t>::max()), "9223372036854775807");
  EXPECT_EQ(JsonCell(std::numeric_limits<int64_t>::min()), "-9223372036854775808");
}

TEST(JsonCellTest, Numbers) {
  EXPECT_EQ(JsonCell(12.5), "12.5");
  EXPECT_EQ(JsonCell(0.1), "0.1");
  EXPECT_EQ(JsonCell(3.0), "3");
  EXPECT_EQ(JsonCell(-0.0), "-0");
  EXPECT_EQ(JsonCell(1e300), "1e+300");
  EXPECT_EQ(JsonCell(1e-7), "1e-07");
}

TEST(JsonCellTest, NonFiniteNumbersAreNull) {
  EXPECT_EQ(JsonCell(std::numeric_limits<double>::quiet_NaN()), "null");
  EXPECT_EQ(JsonCell(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(JsonCell(-std::numeric_limits<double>::infinity()), "null");
}

TEST(JsonRecordTest, KeysInColumnOrder) {
  const jsonl::Encoder encoder({{"id", catalog::FieldType::FIELD_TYPE_INTEGER},
                                {"name", catalog::FieldType::FIELD_TYPE_STRING},
                                {"score", catalog::FieldType::FIELD_TYPE_NUMBER},
                                {"active", catalog::FieldType::FIELD_TYPE_BOOLEAN},
                                {"closed_at", catalog::FieldType::FIELD_TYPE_TIMESTAMP}});
  std::string out;
  encoder.AppendRecord({int64_t{7}, std::string("Acme \"A\""), 12.5, true, std::monostate()}, &out);
  encoder.AppendRecord(
      {int64_t{8}, std::string("B\nC"), std::nan(""), false, std::string("2026-01-31T09:30:00Z")},
      &out);
  EXPECT_EQ(out,
            "{\"id\":7,\"name\":\"Acme \\\"A\\\"\",\"score\":12.5,\"active\":true,"
            "\"closed_at\":null}\n"
            "{\"id\":8,\"name\":\"B\\nC\",\"score\":null,\"active\":false,"
            "\"closed_at\":\"2026-01-31T09:30:00Z\"}\n");
}

TEST(JsonRecordTest, KeysAreEscaped) {
  const jsonl::Encoder encoder({{"we\"ird\\", catalog::FieldType::FIELD_TYPE_STRING}});
  std::string out;
  encoder.AppendRecord({std::string("x")}, &out);
  EXPECT_EQ(out, "{\"we\\\"ird\\\\\":\"x\"}\n");
}

// A parsed JSON value. Numbers keep their text, so that the test can check integers stay
// integers and doubles read back exactly.
struct JsonNumber {
  std::string text;
};
struct JsonValue;
using JsonObject = std::vector<std::pair<std::string, JsonValue>>;
struct JsonValue {
  std::variant<std::nullptr_t, bool, JsonNumber, std::string, std::shared_ptr<JsonObject>> value;
};

// A strict parser for RFC 8259 objects of scalars: rejects raw control characters and
// ill-formed UTF-8 in strings, unknown escapes, lone surrogates, numbers outside the grammar and
// anything after the value.
class JsonParser {
 public:
  static absl::StatusOr<JsonValue> Parse(std::string_view text) {
    JsonParser parser(text);
    absl::StatusOr<JsonValue> value = parser.Value();
    if (!value.ok()) return value;
    if (parser.pos_ != text.size()) return parser.Error("trailing characters");
    return value;
  }

 private:
  explicit JsonParser(std::string_view text) : text_(text) {}

  absl::Status Error(const char* what) const {
    return absl::InvalidArgumentError(absl::StrCat("offset ", pos_, ": ", what));
  }
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return AtEnd() ? '\0' : text_[pos_]; }
  bool Consume(std::string_view literal) {
    if (text_.substr(pos_, literal.size()) != literal) return false;
    pos_ += literal.size();
    return true;
  }

  absl::StatusOr<JsonValue> Value() {
    if (Consume("null")) return JsonValue{nullptr};
    if (Consume("true")) return JsonValue{true};
    if (Consume("false")) return JsonValue{false};
    if (Peek() == '"') {
      absl::StatusOr<std::string> text = String();
      if (!text.ok()) return text.status();
      return JsonValue{*std::move(text)};
    }
    if (Peek() == '{') return Object();
    return Number();
  }

  absl::StatusOr<JsonValue> Object() {
    ++pos_;  // '{'
    auto object = std::make_shared<JsonObject>();
    if (Consume("}")) return JsonValue{object};
    while (true) {
      if (Peek() != '"') return Error("expected a key");
      absl::StatusOr<std::string> key = String();
      if (!key.ok()) return key.status();
      if (!Consume(":")) return Error("expected ':'");
      absl::StatusOr<JsonValue> value = Value();
      if (!value.ok()) return value.status();
      object->emplace_back(*std::move(key), *std::move(value));
      if (Consume("}")) return JsonValue{object};
      if (!Consume(",")) return Error("expected ',' or '}'");
    }
  }

  absl::StatusOr<JsonValue> Number() {
    const size_t start = pos_;
    auto digits = [this] {
      const size_t from = pos_;
      while (Peek() >= '0' && Peek() <= '9') ++pos_;
      return pos_ - from;
    };
    Consume("-");
    if (Peek() == '0') {
      ++pos_;
    } else if (digits() == 0) {
      return Error("expected a value");
    }
    if (Consume(".") && digits() == 0) return Error("expected a digit after '.'");
    if (Peek() == 'e' || Peek() == 'E') {
      ++pos_;
      if (!Consume("+")) Consume("-");
      if (digits() == 0) return Error("expected an exponent");
    }
    return JsonValue{JsonNumber{std::string(text_.substr(start, pos_ - start))}};
  }

  absl::StatusOr<uint32_t> Hex4() {
    if (pos_ + 4 > text_.size()) return Error("short \\u escape");
    uint32_t value = 0;
    const std::from_chars_result result =
        std::from_chars(text_.data() + pos_, text_.data() + pos_ + 4, value, 16);
    if (result.ec != std::errc() || result.ptr != text_.data() + pos_ + 4) {
      return Error("bad \\u escape");
    }
    pos_ += 4;
    return value;
  }

  static void AppendUtf8(uint32_t code_point, std::string* out) {
    if (code_point < 0x80) {
      out->push_back(static_cast<char>(code_point));
    } else if (code_point < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (code_point >> 6)));
      out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
    } else if (code_point < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (code_point >> 12)));
      out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (code_point >> 18)));
      out->push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
    }
  }

  // Decodes one UTF-8 character at pos_ by computing its code point and re-encoding it: a
  // sequence is accepted only when it is the shortest encoding of a non-surrogate code point.
  absl::Status Utf8Character(std::string* out) {
    const auto lead = static_cast<unsigned char>(text_[pos_]);
    int length;
    uint32_t code_point;
    if (lead < 0x80) {
      length = 1;
      code_point = lead;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2;
      code_point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3;
      code_point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4;
      code_point = lead & 0x07;
    } else {
      return Error("bad UTF-8 lead byte");
    }
    if (pos_ + length > text_.size()) return Error("truncated UTF-8");
    for (int i = 1; i < length; ++i) {
      const auto c = static_cast<unsigned char>(text_[pos_ + i]);
      if ((c & 0xC0) != 0x80) return Error("bad UTF-8 continuation byte");
      code_point = (code_point << 6) | (c & 0x3F);
    }
    if (code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return Error("UTF-8 for a surrogate or beyond U+10FFFF");
    }
    std::string encoded;
    AppendUtf8(code_point, &encoded);
    if (encoded != text_.substr(pos_, length)) return Error("overlong UTF-8");
    out->append(encoded);
    pos_ += length;
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> String() {
    ++pos_;  // '"'
    std::string out;
    while (true) {
      if (AtEnd()) return Error("unterminated string");
      const auto c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) return Error("raw control character in a string");
      if (c != '\\') {
        absl::Status status = Utf8Character(&out);
        if (!status.ok()) return status;
        continue;
      }
      ++pos_;
      if (AtEnd()) return Error("unterminated escape");
      const char escape = text_[pos_++];
      switch (escape) {
        case '"':
        case '\\':
        case '/':
          out.push_back(escape);
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          absl::StatusOr<uint32_t> unit = Hex4();
          if (!unit.ok()) return unit.status();
          uint32_t code_point = *unit;
          if (code_point >= 0xDC00 && code_point <= 0xDFFF) return Error("lone low surrogate");
          if (code_point >= 0xD800 && code_point <= 0xDBFF) {
            if (!Consume("\\u")) return Error("lone high surrogate");
            absl::StatusOr<uint32_t> low = Hex4();
            if (!low.ok()) return low.status();
            if (*low < 0xDC00 || *low > 0xDFFF) return Error("bad low surrogate");
            code_point = 0x10000 + ((code_point - 0xD800) << 10) + (*low - 0xDC00);
          }
          AppendUtf8(code_point, &out);
          break;
        }
        default:
          return Error("unknown escape");
      }
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

// The parser itself must be strict, or the round trip below proves nothing.
TEST(JsonParserTest, RejectsMalformedInput) {
  for (std::string_view bad :
       {"{\"a\":1,}", "{\"a\" 1}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":\"x\ny\"}",
        "{\"a\":\"\\x\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\xC3\"}", "{\"a\":\"\xC0\xAF\"}",
        "{\"a\":\"\xED\xA0\x80\"}", "{\"a\":nul}", "{\"a\":1}x", "{\"a\":\"b}"}) {
    EXPECT_FALSE(JsonParser::Parse(bad).ok()) << bad;
  }
  EXPECT_OK(JsonParser::Parse("{\"a\":-0.5e+3,\"b\":\"\\ud83d\\ude00\\u00e9\",\"c\":null}"));
}

// A random valid UTF-8 string over characters that trouble JSON writers.
std::string NastyString(std::mt19937& random) {
  static const std::vector<std::string> kPieces = {"a",
                                                   " ",
                                                   "\"",
                                                   "\\",
                                                   "/",
                                                   "\n",
                                                   "\r",
                                                   "\t",
                                                   "\b",
                                                   "\f",
                                                   std::string(1, '\0'),
                                                   "\x01",
                                                   "\x1f",
                                                   "\x7f",
                                                   "\xC3\xA9",
                                                   "\xE2\x80\xA8",
                                                   "\xEF\xBF\xBD",
                                                   "\xF0\x9F\x98\x80",
                                                   "\\u0000",
                                                   "{}",
                                                   ",",
                                                   ":"};
  const int length = std::uniform_int_distribution<int>(0, 12)(random);
  std::string value;
  for (int i = 0; i < length; ++i) {
    value += kPieces[std::uniform_int_distribution<size_t>(0, kPieces.size() - 1)(random)];
  }
  return value;
}

Cell RandomCell(std::mt19937& random) {
  switch (std::uniform_int_distribution<int>(0, 6)(random)) {
    case 0:
      return std::monostate();
    case 1:
      return static_cast<int64_t>(std::uniform_int_distribution<uint64_t>()(random));
    case 2: {
      const uint64_t bits = std::uniform_int_distribution<uint64_t>()(random);
      return std::bit_cast<double>(bits);  // Any double, non-finite ones included.
    }
    case 3:
      return std::uniform_int_distribution<int>(0, 1)(random) == 1;
    default:
      return NastyString(random);
  }
}

// Checks that `parsed` is what `cell` should read back as.
void ExpectReadsBackAs(const JsonValue& parsed, const Cell& cell, const std::string& where) {
  if (const auto* text = std::get_if<std::string>(&cell)) {
    const auto* parsed_text = std::get_if<std::string>(&parsed.value);
    ASSERT_NE(parsed_text, nullptr) << where;
    EXPECT_EQ(*parsed_text, *text) << where;
  } else if (const auto* integer = std::get_if<int64_t>(&cell)) {
    const auto* number = std::get_if<JsonNumber>(&parsed.value);
    ASSERT_NE(number, nullptr) << where;
    int64_t value = 0;
    const std::from_chars_result result =
        std::from_chars(number->text.data(), number->text.data() + number->text.size(), value);
    ASSERT_TRUE(result.ec == std::errc() && result.ptr == number->text.data() + number->text.size())
        << where << ": not an integer: " << number->text;
    EXPECT_EQ(value, *integer) << where;
  } else if (const auto* real = std::get_if<double>(&cell)) {
    if (!std::isfinite(*real)) {
      EXPECT_TRUE(std::holds_alternative<std::nullptr_t>(parsed.value)) << where;
      return;
    }
    const auto* number = std::get_if<JsonNumber>(&parsed.value);
    ASSERT_NE(number, nullptr) << where;
    EXPECT_EQ(std::bit_cast<uint64_t>(std::strtod(number->text.c_str(), nullptr)),
              std::bit_cast<uint64_t>(*real))
        << where << ": " << number->text;
  } else if (const auto* boolean = std::get_if<bool>(&cell)) {
    const auto* parsed_boolean = std::get_if<bool>(&parsed.value);
    ASSERT_NE(parsed_boolean, nullptr) << where;
    EXPECT_EQ(*parsed_boolean, *boolean) << where;
  } else {
    EXPECT_TRUE(std::holds_alternative<std::nullptr_t>(parsed.value)) << where;
  }
}

TEST(JsonRoundTripTest, RandomRowsParseBack) {
  std::mt19937 random(8259);
  constexpr int kColumns = 7;
  std::vector<Column> columns;
  for (int i = 0; i < kColumns; ++i) {
    columns.push_back({absl::StrCat(NastyString(random), "#", i),  // Distinct names.
                       catalog::FieldType::FIELD_TYPE_STRING});
  }
  const jsonl::Encoder encoder(columns);
  std::vector<Row> rows;
  std::string file;
  for (int i = 0; i < 2000; ++i) {
    Row row;
    for (int j = 0; j < kColumns; ++j) row.push_back(RandomCell(random));
    encoder.AppendRecord(row, &file);
    rows.push_back(std::move(row));
  }

  // A raw LF cannot occur inside a valid JSON value, so splitting at LF finds the records.
  ASSERT_FALSE(file.empty());
  ASSERT_EQ(file.back(), '\n');
  std::vector<std::string_view> lines;
  std::string_view rest = file;
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    lines.push_back(rest.substr(0, end));
    rest.remove_prefix(end + 1);
  }
  ASSERT_EQ(lines.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(JsonValue parsed, JsonParser::Parse(lines[i]));
    const auto* object = std::get_if<std::shared_ptr<JsonObject>>(&parsed.value);
    ASSERT_NE(object, nullptr) << "record " << i;
    ASSERT_EQ((*object)->size(), columns.size()) << "record " << i;
    for (int j = 0; j < kColumns; ++j) {
      const std::string where = absl::StrCat("record ", i, " field ", j);
      EXPECT_EQ((**object)[j].first, columns[j].name) << where;
      ExpectReadsBackAs((**object)[j].second, rows[i][j], where);
    }
  }
}

TEST(JsonRoundTripTest, IllFormedUtf8StillGivesValidJson) {
  std::mt19937 random(3629);
  const jsonl::Encoder encoder({{"s", catalog::FieldType::FIELD_TYPE_STRING}});
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(std::uniform_int_distribution<int>(0, 8)(random), '\0');
    for (char& c : bytes) c = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(random));
    std::string line;
    encoder.AppendRecord({bytes}, &line);
    ASSERT_EQ(line.back(), '\n');
    line.pop_back();
    EXPECT_OK(JsonParser::Parse(line)) << line;
  }
}

}  // namespace
}  // namespace exportd
