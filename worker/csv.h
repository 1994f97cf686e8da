// CSV encoding of export records per RFC 4180: fields separated by commas, records ended by CRLF.
// A field is quoted (with its quotes doubled) when it contains a comma, quote, CR or LF, when it
// begins or ends with a space or tab (which many readers would trim), and when it is the empty
// string — so that an empty string ("") stays distinct from NULL, which is an empty unquoted
// field. Booleans are `true` / `false`; integers are decimal; numbers use the shortest text that
// reads back as the same double (12.5 stays 12.5), and NaN / Infinity / -Infinity for the
// non-finite ones; strings and timestamps are written as given (bytes passed through).
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "worker/row.h"

namespace exportd::csv {

// Appends `value` as one field (quoted when needed, see above) to `*out`.
void AppendField(std::string_view value, std::string* out);

// Appends one cell as a field to `*out`.
void AppendCell(const Cell& cell, std::string* out);

// Appends the header record (the column names, then CRLF) to `*out`.
void AppendHeader(const std::vector<Column>& columns, std::string* out);

// Appends one record (its cells, then CRLF) to `*out`.
void AppendRecord(const Row& row, std::string* out);

}  // namespace exportd::csv
