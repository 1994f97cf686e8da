// Demo data: a deterministic generator that fills an SQLite database (the schema of
// SqliteSchema() in worker/sqlite_source.h) with realistic B2B records for all six entities —
// accounts, and for each account its people, opportunities, activities and buying groups, plus
// marketing campaigns.
//
// The same options always give the same bytes: values come from a seeded PRNG with its own
// integer and floating-point distributions (nothing from <random> whose results differ between
// standard libraries), and timestamps are relative to options.now_unix_seconds, never the clock.
// Some values are NULL, and some contain commas, quotes, newlines, '%', '_' and non-ASCII
// letters, so that exports and filters meet them.
//
// Thread safety: GenerateDemoData is a free function with no shared state; concurrent calls
// must write different paths.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace exportd {

struct DemoDataOptions {
  // Number of accounts. Every other table except campaigns is sized relative to it.
  int64_t accounts = 1000;
  // Per-account averages; the totals are exactly round(accounts * average), spread unevenly
  // (larger companies have more people and activities; some accounts have none).
  double people_per_account = 5;
  double opportunities_per_account = 2;
  double activities_per_account = 20;
  double buying_groups_per_account = 1;
  // Number of campaigns; -1 means accounts / 100 + 10.
  int64_t campaigns = -1;
  // Different seeds give different data sets.
  uint64_t seed = 1;
  // The data set's "now", in seconds since the Unix epoch: creation times and activities lie
  // before it, open opportunities close and planned campaigns start after it. Default
  // 2026-01-01T00:00:00Z.
  int64_t now_unix_seconds = 1767225600;
  // Replace an existing file at the path instead of failing with ALREADY_EXISTS.
  bool overwrite = false;
};

// The number of rows GenerateDemoData writes to the table of each entity.
struct DemoDataSizes {
  int64_t accounts = 0;
  int64_t people = 0;
  int64_t opportunities = 0;
  int64_t activities = 0;
  int64_t campaigns = 0;
  int64_t buying_groups = 0;
};
DemoDataSizes DemoSizes(const DemoDataOptions& options);

// Writes a new demo database to `path`: it is built in "<path>.tmp", synced and then renamed, so
// `path` never holds a partial database. One transaction with prepared statements; 100,000
// accounts (about 2.9 million rows) take a few seconds.
// Errors: INVALID_ARGUMENT for negative or non-finite sizes (or more than 10 million accounts);
// ALREADY_EXISTS when `path` exists and !options.overwrite; UNAVAILABLE (with SQLite's or the
// system's message) when the file cannot be written.
[[nodiscard]] absl::Status GenerateDemoData(const std::string& path,
                                            const DemoDataOptions& options);

}  // namespace exportd
