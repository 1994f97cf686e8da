#include "storage/keys.h"

#include "common/job_id.h"

namespace exportd::keys {

void AppendBigEndian64(uint64_t value, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

void AppendBigEndian32(uint32_t value, std::string* out) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

uint64_t DecodeBigEndian64(std::string_view bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < 8; ++i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

uint32_t DecodeBigEndian32(std::string_view bytes) {
  uint32_t value = 0;
  for (size_t i = 0; i < 4; ++i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

uint64_t TimeToKeyMicros(absl::Time time) {
  // ToUnixMicros saturates: InfinitePast gives INT64_MIN, InfiniteFuture INT64_MAX.
  const int64_t micros = absl::ToUnixMicros(time);
  return micros < 0 ? 0 : static_cast<uint64_t>(micros);
}

std::string PrefixSuccessor(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last != 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return end;
}

std::string JobKey(std::string_view id) { return std::string(id); }

std::string TimeIndexKey(absl::Time time, std::string_view id) {
  std::string key;
  key.reserve(kTimeBytes + id.size());
  AppendBigEndian64(TimeToKeyMicros(time), &key);
  key.append(id);
  return key;
}

std::string TimeIndexUpperBound(absl::Time time) {
  // TimeToKeyMicros is at most INT64_MAX, so adding one cannot overflow a uint64.
  std::string key;
  AppendBigEndian64(TimeToKeyMicros(time) + 1, &key);
  return key;
}

std::optional<TimeIndexEntry> DecodeTimeIndexKey(std::string_view key) {
  if (key.size() != kTimeBytes + kJobIdLength) return std::nullopt;
  const uint64_t micros = DecodeBigEndian64(key);
  if (micros > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  return TimeIndexEntry{absl::FromUnixMicros(static_cast<int64_t>(micros)), key.substr(kTimeBytes)};
}

std::string EventKey(std::string_view id, int64_t revision) {
  std::string key;
  key.reserve(id.size() + kRevisionBytes);
  key.append(id);
  AppendBigEndian64(static_cast<uint64_t>(revision < 0 ? 0 : revision), &key);
  return key;
}

std::string JobPrefixStart(std::string_view id) { return std::string(id); }

std::string JobPrefixEnd(std::string_view id) { return PrefixSuccessor(id); }

std::string PartKey(std::string_view id, int32_t part_number) {
  std::string key;
  key.reserve(id.size() + kPartNumberBytes);
  key.append(id);
  AppendBigEndian32(static_cast<uint32_t>(part_number < 0 ? 0 : part_number), &key);
  return key;
}

std::string IdempotencyKey(std::string_view tenant, std::string_view request_id) {
  std::string key;
  key.reserve(tenant.size() + 1 + request_id.size());
  key.append(tenant);
  key.push_back('\0');
  key.append(request_id);
  return key;
}

}  // namespace exportd::keys
