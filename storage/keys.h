// Keys: the whole key layout of the RocksDB job store, one column family per purpose.
//
// Every key starts with what it is looked up or scanned by. Integers in keys are unsigned
// big-endian so that byte order is numeric order. Job ids have a fixed length (kJobIdLength), so
// a key that starts with an id never matches a different id by prefix. Times are microseconds
// since the Unix epoch (absl::ToUnixMicros); times before the epoch are stored as 0.
//
//   family       key                                   value
//   jobs         id                                    serialized JobRecord
//   queue        ready_at micros (8, BE) | id          empty
//   leases       lease expiry micros (8, BE) | id      empty
//   events       id | revision (8, BE)                 serialized public ExportJob snapshot
//   parts        id | part_number (4, BE)              serialized exportjobs.v1.ExportPart
//   idempotency  tenant | '\0' | request_id            id
//
// Thread safety: everything here is a pure function of its arguments.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace exportd::keys {

// The column families, besides RocksDB's "default" (which is opened but holds nothing).
// The values index kColumnFamilyNames and the handles of an open store.
enum class ColumnFamily : int {
  kJobs = 0,         // id -> serialized JobRecord.
  kQueue = 1,        // ready_at | id -> empty: the PENDING jobs in claim order.
  kLeases = 2,       // lease expiry | id -> empty: PROCESSING jobs with a lease, for the reaper.
  kEvents = 3,       // id | revision -> public ExportJob snapshot, for watch resume.
  kParts = 4,        // id | part_number -> ExportPart; for now only dropped with the job.
  kIdempotency = 5,  // tenant | '\0' | request_id -> id of the job created with them.
};

inline constexpr size_t kColumnFamilyCount = 6;

// The RocksDB names of the column families, indexed by ColumnFamily.
inline constexpr std::array<std::string_view, kColumnFamilyCount> kColumnFamilyNames = {
    "jobs", "queue", "leases", "events", "parts", "idempotency",
};

constexpr size_t Index(ColumnFamily cf) { return static_cast<size_t>(cf); }

// Sizes of the fixed-length key components.
inline constexpr size_t kTimeBytes = 8;
inline constexpr size_t kRevisionBytes = 8;
inline constexpr size_t kPartNumberBytes = 4;

// Big-endian integer encoding.
void AppendBigEndian64(uint64_t value, std::string* out);
void AppendBigEndian32(uint32_t value, std::string* out);
// REQUIRES: bytes.size() >= 8 (resp. 4); reads the first 8 (resp. 4) bytes.
uint64_t DecodeBigEndian64(std::string_view bytes);
uint32_t DecodeBigEndian32(std::string_view bytes);

// `time` as stored in keys: microseconds since the epoch, 0 for earlier times.
uint64_t TimeToKeyMicros(absl::Time time);

// The smallest key greater than every key that starts with `prefix`; empty when there is none
// (prefix empty or all 0xff).
std::string PrefixSuccessor(std::string_view prefix);

// --- jobs ---
std::string JobKey(std::string_view id);

// --- queue and leases (same layout: time | id) ---
std::string TimeIndexKey(absl::Time time, std::string_view id);
// An exclusive upper bound for the keys whose time is <= `time`.
std::string TimeIndexUpperBound(absl::Time time);

struct TimeIndexEntry {
  absl::Time time;
  std::string_view id;  // Points into the decoded key.
};
// nullopt when `key` is not time | id with an id of kJobIdLength.
std::optional<TimeIndexEntry> DecodeTimeIndexKey(std::string_view key);

// --- events ---
// REQUIRES: revision >= 0.
std::string EventKey(std::string_view id, int64_t revision);
// Bounds of all of one job's events (and parts): [JobPrefixStart(id), JobPrefixEnd(id)).
std::string JobPrefixStart(std::string_view id);
std::string JobPrefixEnd(std::string_view id);

// --- parts ---
// REQUIRES: part_number >= 0.
std::string PartKey(std::string_view id, int32_t part_number);

// --- idempotency ---
// REQUIRES: tenant has no '\0' (else two pairs could share a key).
std::string IdempotencyKey(std::string_view tenant, std::string_view request_id);

}  // namespace exportd::keys
