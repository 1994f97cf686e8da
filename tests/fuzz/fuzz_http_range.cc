// Fuzzes DecideRange (server/http_range.h) with any Range header value and any resource size.
//
// Input: 8 bytes of size (little-endian, sign bit cleared; with a short input the size is a
// small default), then the header value.
//
// Invariants:
//  - the decision is for the given size;
//  - kPartial: 0 <= first <= last < size, length() == last - first + 1, and ContentRange() is
//    exactly "bytes <first>-<last>/<size>";
//  - kUnsatisfiable: length() 0 and ContentRange() "bytes */<size>";
//  - kWhole: length() == size and no Content-Range;
//  - surrounding optional whitespace and the case of the unit do not change the decision;
//  - a header without "=" or with a unit other than "bytes" is ignored (kWhole);
//  - a suffix range "bytes=-n" of a non-empty resource serves min(n, size) bytes (n > 0).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/http_range.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using exportd::DecideRange;
using exportd::RangeDecision;

bool Same(const RangeDecision& a, const RangeDecision& b) {
  return a.kind == b.kind && a.first == b.first && a.last == b.last && a.size == b.size;
}

std::string Describe(const RangeDecision& d) {
  const char* kind = d.kind == RangeDecision::Kind::kWhole     ? "whole"
                     : d.kind == RangeDecision::Kind::kPartial ? "partial"
                                                               : "unsatisfiable";
  return absl::StrCat(kind, " first=", d.first, " last=", d.last, " size=", d.size);
}

void CheckShape(const RangeDecision& d, int64_t size, std::string_view header) {
  FUZZ_CHECK(d.size == size, "header", header);
  switch (d.kind) {
    case RangeDecision::Kind::kPartial:
      FUZZ_CHECK(0 <= d.first && d.first <= d.last && d.last < size, "decision", Describe(d));
      FUZZ_CHECK(d.length() == d.last - d.first + 1, "decision", Describe(d));
      FUZZ_CHECK(d.ContentRange() == absl::StrCat("bytes ", d.first, "-", d.last, "/", size),
                 "decision", Describe(d));
      break;
    case RangeDecision::Kind::kUnsatisfiable:
      FUZZ_CHECK(d.length() == 0, "decision", Describe(d));
      FUZZ_CHECK(d.ContentRange() == absl::StrCat("bytes */", size), "decision", Describe(d));
      break;
    case RangeDecision::Kind::kWhole:
      FUZZ_CHECK(d.length() == size, "decision", Describe(d));
      FUZZ_CHECK(d.ContentRange().empty(), "decision", Describe(d));
      break;
    default:
      FUZZ_CHECK(false, "decision of unknown kind", Describe(d));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int64_t resource_size = 1000;
  if (size >= 8) {
    uint64_t raw = 0;
    std::memcpy(&raw, data, 8);
    resource_size = static_cast<int64_t>(raw & ~(uint64_t{1} << 63));
    // Most of the interesting boundaries are at small sizes; keep most inputs there.
    if ((raw >> 62) & 1) resource_size %= 4096;
    data += 8;
    size -= 8;
  }
  const std::string header(reinterpret_cast<const char*>(data), size);

  const RangeDecision decision = DecideRange(header, resource_size);
  CheckShape(decision, resource_size, header);

  // Optional whitespace around the value is not part of it.
  const RangeDecision padded = DecideRange(absl::StrCat(" \t", header, "\t "), resource_size);
  FUZZ_CHECK(Same(decision, padded), "header", header);

  const size_t equals = header.find('=');
  if (equals == std::string::npos) {
    FUZZ_CHECK(decision.kind == RangeDecision::Kind::kWhole, "header", header);
  } else {
    // The unit is case-insensitive; any other unit is ignored. Leading SP/HTAB are the
    // header's optional whitespace, not part of the unit.
    const std::string unit = header.substr(0, equals);
    size_t start = 0;
    while (start < unit.size() && (unit[start] == ' ' || unit[start] == '\t')) ++start;
    if (!absl::EqualsIgnoreCase(absl::string_view(unit).substr(start), "bytes")) {
      FUZZ_CHECK(decision.kind == RangeDecision::Kind::kWhole, "header", header);
    }
    const std::string upper = absl::StrCat(absl::AsciiStrToUpper(unit), header.substr(equals));
    FUZZ_CHECK(Same(decision, DecideRange(upper, resource_size)), "header", header);
  }

  // "bytes=-n": the last n bytes.
  constexpr std::string_view kSuffix = "bytes=-";
  if (header.size() > kSuffix.size() && header.substr(0, kSuffix.size()) == kSuffix) {
    const std::string digits = header.substr(kSuffix.size());
    uint64_t n = 0;
    if (digits.size() <= 18 && digits.find_first_not_of("0123456789") == std::string::npos &&
        absl::SimpleAtoi(digits, &n) && n > 0 && resource_size > 0) {
      FUZZ_CHECK(decision.kind == RangeDecision::Kind::kPartial, "header", header);
      const int64_t expected =
          static_cast<int64_t>(n) < resource_size ? static_cast<int64_t>(n) : resource_size;
      FUZZ_CHECK(decision.length() == expected && decision.last == resource_size - 1, "decision",
                 Describe(decision));
    }
  }
  return 0;
}
