// Rows as the export engine moves them from a Source to a writer.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "common/catalog.h"

namespace exportd {

// One value: NULL, text (strings and timestamps, the latter as UTC "YYYY-MM-DDTHH:MM:SSZ"),
// an integer, a number or a boolean.
using Cell = std::variant<std::monostate, std::string, int64_t, double, bool>;

// The cells of one record, in the order of the export's columns.
using Row = std::vector<Cell>;

struct Column {
  std::string name;
  catalog::FieldType type;
};

}  // namespace exportd
