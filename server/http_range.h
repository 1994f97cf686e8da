// HTTP Range requests (RFC 9110 section 14) for a resource of a known size: what to send for
// the value of a request's Range header.
//
// Only single byte ranges are served as 206. The decisions, in order:
//  - no header, an empty value, a unit other than "bytes", or a value that does not follow
//    the grammar (e.g. "bytes=abc", "bytes=1-2-3") -> the whole resource (200); RFC 9110
//    lets a server ignore a Range it cannot parse.
//  - more than one range ("bytes=0-1,5-6") -> the whole resource (200): also allowed by
//    RFC 9110, and it spares clients and server multipart/byteranges.
//  - one range that overlaps the resource -> that range (206), clipped to the resource:
//    "bytes=a-b" (b past the end is clipped), "bytes=a-" (to the end), "bytes=-n" (the last n
//    bytes, all of them when n >= size).
//  - one range that does not (first >= size, last < first, or a zero-length suffix
//    "bytes=-0") -> 416 with Content-Range "bytes */<size>".
// Numbers too large for int64 saturate: a huge first is unsatisfiable, a huge last or suffix
// length reaches the end. A suffix range of an empty resource is served whole (it would be
// empty and Content-Range cannot express that).
//
// Thread safety: pure functions and a value type.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace exportd {

struct RangeDecision {
  enum class Kind {
    kWhole,          // 200, the whole resource.
    kPartial,        // 206, bytes [first, last].
    kUnsatisfiable,  // 416.
  };
  Kind kind = Kind::kWhole;
  // kPartial: the inclusive byte positions, 0 <= first <= last < size.
  int64_t first = 0;
  int64_t last = 0;
  // The resource's size.
  int64_t size = 0;

  // kPartial: last - first + 1; kWhole: size; kUnsatisfiable: 0.
  int64_t length() const;
  // kPartial: "bytes <first>-<last>/<size>"; kUnsatisfiable: "bytes */<size>"; kWhole: "".
  std::string ContentRange() const;
};

// What to serve for the Range header `value` ("" when the request has none) of a resource of
// `size` bytes. REQUIRES: size >= 0.
RangeDecision DecideRange(std::string_view value, int64_t size);

}  // namespace exportd
