#include "server/http_range.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace exportd {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

// Strips optional whitespace (SP and HTAB, RFC 9110 section 5.6.3) from both ends.
std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (absl::ascii_tolower(static_cast<unsigned char>(a[i])) !=
        absl::ascii_tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// 1*DIGIT, saturating at kMax; nullopt when `s` is empty or holds anything but digits.
std::optional<int64_t> ParseDigits(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const int digit = c - '0';
    if (value > (kMax - digit) / 10) {
      value = kMax;
    } else {
      value = value * 10 + digit;
    }
  }
  return value;
}

// One range-spec: "first-", "first-last" or "-suffix". first or suffix is nullopt when
// absent; valid is false when `spec` does not follow the grammar.
struct RangeSpec {
  bool valid = false;
  std::optional<int64_t> first;
  std::optional<int64_t> last;
  std::optional<int64_t> suffix;
};

RangeSpec ParseSpec(std::string_view spec) {
  RangeSpec result;
  const size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return result;
  const std::string_view before = spec.substr(0, dash);
  const std::string_view after = spec.substr(dash + 1);
  if (before.empty()) {
    result.suffix = ParseDigits(after);
    result.valid = result.suffix.has_value();
    return result;
  }
  result.first = ParseDigits(before);
  if (!result.first.has_value()) return result;
  if (!after.empty()) {
    result.last = ParseDigits(after);
    if (!result.last.has_value()) return result;
  }
  result.valid = true;
  return result;
}

RangeDecision Whole(int64_t size) {
  RangeDecision decision;
  decision.kind = RangeDecision::Kind::kWhole;
  decision.size = size;
  return decision;
}

RangeDecision Unsatisfiable(int64_t size) {
  RangeDecision decision;
  decision.kind = RangeDecision::Kind::kUnsatisfiable;
  decision.size = size;
  return decision;
}

RangeDecision Partial(int64_t first, int64_t last, int64_t size) {
  RangeDecision decision;
  decision.kind = RangeDecision::Kind::kPartial;
  decision.first = first;
  decision.last = last;
  decision.size = size;
  return decision;
}

}  // namespace

int64_t RangeDecision::length() const {
  switch (kind) {
    case Kind::kWhole:
      return size;
    case Kind::kPartial:
      return last - first + 1;
    case Kind::kUnsatisfiable:
      return 0;
  }
  return 0;
}

std::string RangeDecision::ContentRange() const {
  switch (kind) {
    case Kind::kWhole:
      return "";
    case Kind::kPartial:
      return absl::StrCat("bytes ", first, "-", last, "/", size);
    case Kind::kUnsatisfiable:
      return absl::StrCat("bytes */", size);
  }
  return "";
}

RangeDecision DecideRange(std::string_view value, int64_t size) {
  value = TrimOws(value);
  const size_t equals = value.find('=');
  if (equals == std::string_view::npos) return Whole(size);
  // Range units are case-insensitive (RFC 9110 section 14.1).
  if (!EqualsIgnoreCase(value.substr(0, equals), "bytes")) return Whole(size);

  // range-set = 1#range-spec; empty list elements are ignored (RFC 9110 section 5.6.1.2).
  std::vector<RangeSpec> specs;
  std::string_view rest = value.substr(equals + 1);
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view element = TrimOws(rest.substr(0, comma));
    if (!element.empty()) {
      RangeSpec spec = ParseSpec(element);
      if (!spec.valid) return Whole(size);
      specs.push_back(spec);
    }
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  if (specs.size() != 1) return Whole(size);

  const RangeSpec& spec = specs.front();
  if (spec.suffix.has_value()) {
    const int64_t n = *spec.suffix;
    if (n == 0) return Unsatisfiable(size);
    if (size == 0) return Whole(size);
    return Partial(n >= size ? 0 : size - n, size - 1, size);
  }
  const int64_t first = *spec.first;
  if (spec.last.has_value() && *spec.last < first) return Unsatisfiable(size);
  if (first >= size) return Unsatisfiable(size);
  const int64_t last = spec.last.has_value() && *spec.last < size - 1 ? *spec.last : size - 1;
  return Partial(first, last, size);
}

}  // namespace exportd
