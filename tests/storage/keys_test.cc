#include "storage/keys.h"

#include <cstdint>
#include <set>
#include <string>

#include "common/job_id.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace exportd::keys {
namespace {

const std::string kId = "0000018bcfe56800deadbeef";
const std::string kNextId = "0000018bcfe56800deadbef0";
const std::string kSmallestId(kJobIdLength, '0');
const std::string kLargestId(kJobIdLength, 'f');

std::string Hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

TEST(KeysTest, ColumnFamilyNamesAreDistinct) {
  std::set<std::string_view> names(kColumnFamilyNames.begin(), kColumnFamilyNames.end());

  EXPECT_EQ(names.size(), kColumnFamilyCount);
}

TEST(KeysTest, ColumnFamilyNameOfEachFamily) {
  EXPECT_EQ(kColumnFamilyNames[Index(ColumnFamily::kJobs)], "jobs");
  EXPECT_EQ(kColumnFamilyNames[Index(ColumnFamily::kQueue)], "queue");
  EXPECT_EQ(kColumnFamilyNames[Index(ColumnFamily::kLeases)], "leases");
  EXPECT_EQ(kColumnFamilyNames[Index(ColumnFamily::kEvents)], "events");
  EXPECT_EQ(kColumnFamilyNames[Index(ColumnFamily::kParts)], "parts");
  EXPECT_EQ(kColumnFamilyNames[Index(ColumnFamily::kIdempotency)], "idempotency");
}

TEST(KeysTest, BigEndian64) {
  std::string out;
  AppendBigEndian64(0x0102030405060708, &out);

  EXPECT_EQ(Hex(out), "0102030405060708");
}

TEST(KeysTest, BigEndian32) {
  std::string out;
  AppendBigEndian32(0x01020304, &out);

  EXPECT_EQ(Hex(out), "01020304");
}

TEST(KeysTest, BigEndian64RoundTrips) {
  std::string out;
  AppendBigEndian64(0xfedcba9876543210, &out);

  EXPECT_EQ(DecodeBigEndian64(out), 0xfedcba9876543210u);
}

TEST(KeysTest, BigEndian32RoundTrips) {
  std::string out;
  AppendBigEndian32(0xfedcba98, &out);

  EXPECT_EQ(DecodeBigEndian32(out), 0xfedcba98u);
}

TEST(KeysTest, BigEndianSortsNumerically) {
  std::string small;
  std::string large;
  AppendBigEndian64(255, &small);
  AppendBigEndian64(256, &large);

  EXPECT_LT(small, large);
}

TEST(KeysTest, TimeToKeyMicros) {
  EXPECT_EQ(TimeToKeyMicros(absl::FromUnixMicros(1'700'000'000'123'456)), 1'700'000'000'123'456u);
}

TEST(KeysTest, TimeBeforeEpochIsZero) { EXPECT_EQ(TimeToKeyMicros(absl::FromUnixSeconds(-5)), 0u); }

TEST(KeysTest, InfinitePastIsZero) { EXPECT_EQ(TimeToKeyMicros(absl::InfinitePast()), 0u); }

TEST(KeysTest, InfiniteFutureIsLargestTime) {
  EXPECT_EQ(TimeToKeyMicros(absl::InfiniteFuture()), static_cast<uint64_t>(INT64_MAX));
}

TEST(KeysTest, JobKeyIsId) { EXPECT_EQ(JobKey(kId), kId); }

TEST(KeysTest, TimeIndexKeyLayout) {
  EXPECT_EQ(Hex(TimeIndexKey(absl::FromUnixMicros(0x0102), kId)), "0000000000000102" + Hex(kId));
}

TEST(KeysTest, TimeIndexKeyRoundTrips) {
  const absl::Time time = absl::FromUnixMicros(1'700'000'000'123'456);
  const std::string key = TimeIndexKey(time, kId);
  const std::optional<TimeIndexEntry> entry = DecodeTimeIndexKey(key);

  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->time, time);
  EXPECT_EQ(entry->id, kId);
}

TEST(KeysTest, DecodeTimeIndexKeyRefusesWrongLength) {
  EXPECT_FALSE(DecodeTimeIndexKey(TimeIndexKey(absl::UnixEpoch(), "short")).has_value());
}

TEST(KeysTest, TimeIndexKeysSortByTimeThenId) {
  const absl::Time t = absl::FromUnixSeconds(100);

  EXPECT_LT(TimeIndexKey(t, kLargestId), TimeIndexKey(t + absl::Microseconds(1), kSmallestId));
  EXPECT_LT(TimeIndexKey(t, kId), TimeIndexKey(t, kNextId));
}

TEST(KeysTest, TimeIndexUpperBoundIsAfterEveryKeyAtThatTime) {
  const absl::Time t = absl::FromUnixSeconds(100);

  EXPECT_LT(TimeIndexKey(t, kLargestId), TimeIndexUpperBound(t));
}

TEST(KeysTest, TimeIndexUpperBoundIsBeforeEveryLaterKey) {
  const absl::Time t = absl::FromUnixSeconds(100);

  EXPECT_LE(TimeIndexUpperBound(t), TimeIndexKey(t + absl::Microseconds(1), kSmallestId));
}

TEST(KeysTest, TimeIndexUpperBoundOfInfiniteFutureIsAfterEveryKey) {
  EXPECT_LT(TimeIndexKey(absl::InfiniteFuture(), kLargestId),
            TimeIndexUpperBound(absl::InfiniteFuture()));
}

TEST(KeysTest, EventKeyLayout) { EXPECT_EQ(Hex(EventKey(kId, 3)), Hex(kId) + "0000000000000003"); }

TEST(KeysTest, EventKeysSortByRevision) { EXPECT_LT(EventKey(kId, 2), EventKey(kId, 10)); }

TEST(KeysTest, EventKeysOfOneJobAreWithinItsPrefix) {
  EXPECT_LE(JobPrefixStart(kId), EventKey(kId, 0));
  EXPECT_LT(EventKey(kId, INT64_MAX), JobPrefixEnd(kId));
}

TEST(KeysTest, JobPrefixEndIsAtOrBeforeNextId) { EXPECT_LE(JobPrefixEnd(kId), kNextId); }

TEST(KeysTest, PartKeyLayout) { EXPECT_EQ(Hex(PartKey(kId, 258)), Hex(kId) + "00000102"); }

TEST(KeysTest, PartKeysSortByPartNumber) { EXPECT_LT(PartKey(kId, 9), PartKey(kId, 10)); }

TEST(KeysTest, IdempotencyKeyLayout) {
  EXPECT_EQ(IdempotencyKey("tenant", "req"), std::string("tenant\0req", 10));
}

TEST(KeysTest, IdempotencyKeySeparatesTenantFromRequestId) {
  EXPECT_NE(IdempotencyKey("t", "1req"), IdempotencyKey("t1", "req"));
}

TEST(KeysTest, PrefixSuccessorIncrementsLastByte) { EXPECT_EQ(PrefixSuccessor("ab"), "ac"); }

TEST(KeysTest, PrefixSuccessorDropsTrailingFF) {
  EXPECT_EQ(PrefixSuccessor(std::string("a\xff", 2)), "b");
}

TEST(KeysTest, PrefixSuccessorOfAllFFIsEmpty) {
  EXPECT_EQ(PrefixSuccessor(std::string("\xff\xff", 2)), "");
}

}  // namespace
}  // namespace exportd::keys
