#include "worker/csv.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>

namespace exportd::csv {
namespace {

bool NeedsQuotes(std::string_view value) {
  if (value.empty()) return true;  // "" is the empty string; nothing at all is NULL.
  const auto is_blank = [](char c) { return c == ' ' || c == '\t'; };
  if (is_blank(value.front()) || is_blank(value.back())) return true;
  return value.find_first_of(",\"\r\n") != std::string_view::npos;
}

void AppendInteger(int64_t value, std::string* out) {
  char buffer[24];
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->append(buffer, result.ptr);
}

void AppendNumber(double value, std::string* out) {
  if (std::isnan(value)) {
    out->append("NaN");
  } else if (std::isinf(value)) {
    out->append(value > 0 ? "Infinity" : "-Infinity");
  } else {
    // Without a format, to_chars writes the shortest text that round-trips.
    char buffer[32];
    const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
    out->append(buffer, result.ptr);
  }
}

}  // namespace

void AppendField(std::string_view value, std::string* out) {
  if (!NeedsQuotes(value)) {
    out->append(value);
    return;
  }
  out->push_back('"');
  size_t start = 0;
  for (size_t quote = value.find('"'); quote != std::string_view::npos;
       quote = value.find('"', start)) {
    out->append(value.substr(start, quote + 1 - start));
    out->push_back('"');
    start = quote + 1;
  }
  out->append(value.substr(start));
  out->push_back('"');
}

void AppendCell(const Cell& cell, std::string* out) {
  std::visit(
      [out](const auto& value) {
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          // NULL: an empty, unquoted field.
        } else if constexpr (std::is_same_v<T, std::string>) {
          AppendField(value, out);
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

void AppendHeader(const std::vector<Column>& columns, std::string* out) {
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendField(columns[i].name, out);
  }
  out->append("\r\n");
}

void AppendRecord(const Row& row, std::string* out) {
  for (size_t i = 0; i < row.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendCell(row[i], out);
  }
  out->append("\r\n");
}

}  // namespace exportd::csv
