// DecideRange: which bytes a Range header asks for, rendered as "200", "206 a-b" or "416".
#include "server/http_range.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace exportd::testing {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

// "200", "206 <first>-<last>" or "416".
std::string Decide(const std::string& header, int64_t size) {
  const RangeDecision decision = DecideRange(header, size);
  switch (decision.kind) {
    case RangeDecision::Kind::kWhole:
      return "200";
    case RangeDecision::Kind::kPartial:
      return absl::StrCat("206 ", decision.first, "-", decision.last);
    case RangeDecision::Kind::kUnsatisfiable:
      return "416";
  }
  return "?";
}

TEST(HttpRangeTest, NoHeaderIsTheWholeResource) {
  EXPECT_EQ(Decide("", 100), "200");
  EXPECT_EQ(Decide("", 0), "200");
}

TEST(HttpRangeTest, FirstAndLast) {
  EXPECT_EQ(Decide("bytes=0-0", 100), "206 0-0");
  EXPECT_EQ(Decide("bytes=10-19", 100), "206 10-19");
  EXPECT_EQ(Decide("bytes=0-99", 100), "206 0-99");
  EXPECT_EQ(Decide("bytes=99-99", 100), "206 99-99");
  EXPECT_EQ(Decide("bytes=5-5", 6), "206 5-5");
}

TEST(HttpRangeTest, ALastPastTheEndIsClipped) {
  EXPECT_EQ(Decide("bytes=10-100", 100), "206 10-99");
  EXPECT_EQ(Decide("bytes=10-1000000", 100), "206 10-99");
  EXPECT_EQ(Decide("bytes=0-99999999999999999999999999", 100), "206 0-99");
}

TEST(HttpRangeTest, OpenEnded) {
  EXPECT_EQ(Decide("bytes=0-", 100), "206 0-99");
  EXPECT_EQ(Decide("bytes=42-", 100), "206 42-99");
  EXPECT_EQ(Decide("bytes=99-", 100), "206 99-99");
}

TEST(HttpRangeTest, Suffix) {
  EXPECT_EQ(Decide("bytes=-1", 100), "206 99-99");
  EXPECT_EQ(Decide("bytes=-10", 100), "206 90-99");
  EXPECT_EQ(Decide("bytes=-100", 100), "206 0-99");
}

TEST(HttpRangeTest, ASuffixLongerThanTheResourceIsAllOfIt) {
  EXPECT_EQ(Decide("bytes=-101", 100), "206 0-99");
  EXPECT_EQ(Decide("bytes=-99999999999999999999999999", 100), "206 0-99");
}

TEST(HttpRangeTest, AZeroSuffixIsUnsatisfiable) {
  EXPECT_EQ(Decide("bytes=-0", 100), "416");
  EXPECT_EQ(Decide("bytes=-0", 0), "416");
}

TEST(HttpRangeTest, AFirstAtOrPastTheEndIsUnsatisfiable) {
  EXPECT_EQ(Decide("bytes=100-", 100), "416");
  EXPECT_EQ(Decide("bytes=100-200", 100), "416");
  EXPECT_EQ(Decide("bytes=1000-", 100), "416");
  EXPECT_EQ(Decide("bytes=99999999999999999999999999-", 100), "416");
  EXPECT_EQ(Decide("bytes=9223372036854775807-", 100), "416");
}

TEST(HttpRangeTest, ALastBeforeTheFirstIsUnsatisfiable) {
  EXPECT_EQ(Decide("bytes=20-10", 100), "416");
  EXPECT_EQ(Decide("bytes=1-0", 100), "416");
}

TEST(HttpRangeTest, AnEmptyResource) {
  EXPECT_EQ(Decide("bytes=0-", 0), "416");
  EXPECT_EQ(Decide("bytes=0-0", 0), "416");
  // Non-empty suffix ranges of an empty resource are satisfiable but empty: served whole.
  EXPECT_EQ(Decide("bytes=-5", 0), "200");
}

TEST(HttpRangeTest, AOneByteResource) {
  EXPECT_EQ(Decide("bytes=0-", 1), "206 0-0");
  EXPECT_EQ(Decide("bytes=-1", 1), "206 0-0");
  EXPECT_EQ(Decide("bytes=-2", 1), "206 0-0");
  EXPECT_EQ(Decide("bytes=1-", 1), "416");
}

TEST(HttpRangeTest, TheLargestSizes) {
  EXPECT_EQ(Decide("bytes=0-", kMax), absl::StrCat("206 0-", kMax - 1));
  EXPECT_EQ(Decide("bytes=-1", kMax), absl::StrCat("206 ", kMax - 1, "-", kMax - 1));
  EXPECT_EQ(Decide("bytes=9223372036854775806-", kMax),
            absl::StrCat("206 ", kMax - 1, "-", kMax - 1));
  EXPECT_EQ(Decide("bytes=9223372036854775807-", kMax), "416");
  EXPECT_EQ(Decide("bytes=0-9223372036854775807", kMax), absl::StrCat("206 0-", kMax - 1));
  EXPECT_EQ(Decide("bytes=-9223372036854775807", kMax), absl::StrCat("206 0-", kMax - 1));
}

TEST(HttpRangeTest, NumbersThatOverflowSaturate) {
  // 2^63 and far beyond.
  EXPECT_EQ(Decide("bytes=9223372036854775808-", 100), "416");
  EXPECT_EQ(Decide("bytes=0-9223372036854775808", 100), "206 0-99");
  EXPECT_EQ(Decide("bytes=-9223372036854775808", 100), "206 0-99");
  EXPECT_EQ(Decide("bytes=18446744073709551616-18446744073709551617", 100), "416");
}

TEST(HttpRangeTest, LeadingZeros) {
  EXPECT_EQ(Decide("bytes=007-010", 100), "206 7-10");
  EXPECT_EQ(Decide("bytes=-0010", 100), "206 90-99");
}

TEST(HttpRangeTest, TheUnitIsCaseInsensitive) {
  EXPECT_EQ(Decide("Bytes=1-2", 100), "206 1-2");
  EXPECT_EQ(Decide("BYTES=1-2", 100), "206 1-2");
}

TEST(HttpRangeTest, WhitespaceAroundTheValueAndTheRangeIsAllowed) {
  EXPECT_EQ(Decide("  bytes=1-2  ", 100), "206 1-2");
  EXPECT_EQ(Decide("bytes= 1-2", 100), "206 1-2");
  EXPECT_EQ(Decide("bytes=1-2\t", 100), "206 1-2");
}

TEST(HttpRangeTest, EmptyListElementsAreIgnored) {
  EXPECT_EQ(Decide("bytes=,1-2", 100), "206 1-2");
  EXPECT_EQ(Decide("bytes=1-2,", 100), "206 1-2");
  EXPECT_EQ(Decide("bytes=, ,1-2, ,", 100), "206 1-2");
}

TEST(HttpRangeTest, SeveralRangesAreServedWhole) {
  EXPECT_EQ(Decide("bytes=0-1,5-6", 100), "200");
  EXPECT_EQ(Decide("bytes=0-1, -5", 100), "200");
  EXPECT_EQ(Decide("bytes=0-1,0-1", 100), "200");
  // Even when each alone would be unsatisfiable.
  EXPECT_EQ(Decide("bytes=200-300,400-", 100), "200");
}

TEST(HttpRangeTest, OtherUnitsAreIgnored) {
  EXPECT_EQ(Decide("bits=1-2", 100), "200");
  EXPECT_EQ(Decide("items=0-5", 100), "200");
  EXPECT_EQ(Decide("=1-2", 100), "200");
  EXPECT_EQ(Decide("bytesx=1-2", 100), "200");
}

TEST(HttpRangeTest, SyntacticallyInvalidValuesAreIgnored) {
  for (const char* header :
       {"bytes",       "bytes=",        "bytes=,",     "bytes=abc",   "bytes=-",
        "bytes=1",     "bytes=1-2-3",   "bytes=--1",   "bytes=-1-",   "bytes=a-1",
        "bytes=1-b",   "bytes=+1-2",    "bytes=1 -2",  "bytes=1- 2",  "bytes=0x10-0x20",
        "bytes=1.5-2", "bytes=-1-2",    "bytes 1-2",   "bytes=1-2;x", "1-2",
        "bytes==1-2",  "bytes=0-1,abc", "bytes=\xff-1"}) {
    EXPECT_EQ(Decide(header, 100), "200") << header;
  }
}

TEST(HttpRangeTest, ContentRangeOfAPartialResponse) {
  EXPECT_EQ(DecideRange("bytes=10-19", 100).ContentRange(), "bytes 10-19/100");
  EXPECT_EQ(DecideRange("bytes=-1", 100).ContentRange(), "bytes 99-99/100");
}

TEST(HttpRangeTest, ContentRangeOfAnUnsatisfiableRange) {
  EXPECT_EQ(DecideRange("bytes=100-", 100).ContentRange(), "bytes */100");
  EXPECT_EQ(DecideRange("bytes=0-", 0).ContentRange(), "bytes */0");
}

TEST(HttpRangeTest, NoContentRangeForTheWholeResource) {
  EXPECT_EQ(DecideRange("", 100).ContentRange(), "");
  EXPECT_EQ(DecideRange("bytes=0-1,2-3", 100).ContentRange(), "");
}

TEST(HttpRangeTest, Length) {
  EXPECT_EQ(DecideRange("bytes=10-19", 100).length(), 10);
  EXPECT_EQ(DecideRange("bytes=0-", 100).length(), 100);
  EXPECT_EQ(DecideRange("", 100).length(), 100);
  EXPECT_EQ(DecideRange("bytes=100-", 100).length(), 0);
  EXPECT_EQ(DecideRange("bytes=0-", kMax).length(), kMax);
}

TEST(HttpRangeTest, SizeIsKept) {
  EXPECT_EQ(DecideRange("bytes=1-2", 100).size, 100);
  EXPECT_EQ(DecideRange("", 7).size, 7);
  EXPECT_EQ(DecideRange("bytes=200-", 100).size, 100);
}

}  // namespace
}  // namespace exportd::testing
