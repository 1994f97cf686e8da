#include "worker/jsonl.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace exportd::jsonl {
namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD in UTF-8.

// True for the bytes that go into a JSON string as they are, without looking further.
bool IsPlainAscii(unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

// The length of the well-formed UTF-8 sequence at the start of `s` (whose first byte is at least
// 0x80), or, when it is ill-formed, minus the length of its maximal subpart (at least 1): the
// bytes to replace with one U+FFFD. Follows the Unicode Standard, table 3-7.
int Utf8SequenceLength(std::string_view s) {
  const auto lead = static_cast<unsigned char>(s[0]);
  int length;
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) second_min = 0xA0;  // No overlong forms.
    if (lead == 0xED) second_max = 0x9F;  // No surrogates.
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) second_min = 0x90;  // No overlong forms.
    if (lead == 0xF4) second_max = 0x8F;  // Nothing above U+10FFFF.
  } else {
    return -1;  // A continuation byte, C0, C1 or F5..FF.
  }
  for (int i = 1; i < length; ++i) {
    if (static_cast<size_t>(i) >= s.size()) return -i;
    const auto c = static_cast<unsigned char>(s[i]);
    const unsigned char min = i == 1 ? second_min : 0x80;
    const unsigned char max = i == 1 ? second_max : 0xBF;
    if (c < min || c > max) return -i;
  }
  return length;
}

void AppendEscapedControl(unsigned char c, std::string* out) {
  switch (c) {
    case '\n':
      out->append("\\n");
      return;
    case '\r':
      out->append("\\r");
      return;
    case '\t':
      out->append("\\t");
      return;
    default:
      static constexpr char kHex[] = "0123456789abcdef";
      const char escape[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
      out->append(escape, sizeof(escape));
  }
}

void AppendInteger(int64_t value, std::string* out) {
  char buffer[24];
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->append(buffer, result.ptr);
}

void AppendNumber(double value, std::string* out) {
  if (!std::isfinite(value)) {
    out->append("null");
    return;
  }
  // Without a format, to_chars writes the shortest text that round-trips; its forms ("12.5",
  // "-0", "1e+300", "1e-07") are all JSON numbers.
  char buffer[32];
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->append(buffer, result.ptr);
}

}  // namespace

void AppendString(std::string_view value, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  while (i < value.size()) {
    size_t run = i;
    while (run < value.size() && IsPlainAscii(static_cast<unsigned char>(value[run]))) ++run;
    out->append(value.substr(i, run - i));
    i = run;
    if (i == value.size()) break;
    const auto c = static_cast<unsigned char>(value[i]);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20) {
      AppendEscapedControl(c, out);
      ++i;
    } else {
      const int length = Utf8SequenceLength(value.substr(i));
      if (length > 0) {
        out->append(value.substr(i, length));
        i += length;
      } else {
        out->append(kReplacementCharacter);
        i += -length;
      }
    }
  }
  out->push_back('"');
}

void AppendCell(const Cell& cell, std::string* out) {
  std::visit(
      [out](const auto& value) {
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          out->append("null");
        } else if constexpr (std::is_same_v<T, std::string>) {
          AppendString(value, out);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          AppendInteger(value, out);
        } else if constexpr (std::is_same_v<T, double>) {
          AppendNumber(value, out);
        } else {
          static_assert(std::is_same_v<T, bool>);
          out->append(value ? "true" : "false");
        }
      },
      cell);
}

Encoder::Encoder(const std::vector<Column>& columns) {
  key_prefixes_.reserve(columns.size());
  for (size_t i = 0; i < columns.size(); ++i) {
    std::string prefix = i == 0 ? "{" : ",";
    AppendString(columns[i].name, &prefix);
    prefix.push_back(':');
    key_prefixes_.push_back(std::move(prefix));
  }
}

void Encoder::AppendRecord(const Row& row, std::string* out) const {
  if (key_prefixes_.empty()) {
    out->append("{}\n");
    return;
  }
  for (size_t i = 0; i < key_prefixes_.size(); ++i) {
    out->append(key_prefixes_[i]);
    AppendCell(row[i], out);
  }
  out->append("}\n");
}

}  // namespace exportd::jsonl
