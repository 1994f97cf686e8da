// JSON Lines encoding of export records: one JSON object per record, ended by "\n", with the
// column names as keys in column order. Strings are JSON strings: quote and backslash escaped,
// \n, \r and \t by their short escapes and every other control character (U+0000..U+001F) as
// \u00XX; UTF-8 passes through unchanged, and a byte sequence that is not UTF-8 becomes U+FFFD
// (one per maximal invalid subpart), so every line is valid JSON. Integers are JSON integers;
// numbers are the shortest JSON number that reads back as the same double, and null when not
// finite; booleans are true / false; NULL is null. Timestamps are strings, as given.
//
// Thread safety: pure functions; an Encoder is immutable once built.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "worker/row.h"

namespace exportd::jsonl {

// Appends `value` as a JSON string (with its quotes) to `*out`.
void AppendString(std::string_view value, std::string* out);

// Appends one cell as a JSON value to `*out`.
void AppendCell(const Cell& cell, std::string* out);

// Encodes records of a fixed list of columns; the keys are escaped once, here.
class Encoder {
 public:
  explicit Encoder(const std::vector<Column>& columns);

  // Appends one record (an object, then "\n") to `*out`.
  // REQUIRES: row.size() == the number of columns.
  void AppendRecord(const Row& row, std::string* out) const;

 private:
  // For column i: `{"name":` for the first column, `,"name":` for the others.
  std::vector<std::string> key_prefixes_;
};

}  // namespace exportd::jsonl
