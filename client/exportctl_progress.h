// Progress as text: the state of a job while it is watched, and of a download.
//
// watch draws JobProgressText in one of two ways: on a terminal as one live line redrawn in
// place (LiveLine: carriage return, the text cut to the terminal's width, erase to the end of
// the line), and into a pipe or file as plain lines, one per change, without any control
// character (PlainLineFilter drops repeats of the same text).
//
// The rate and ETA of a job come from the job itself, not from the clock of the watcher: the
// records processed since the worker claimed it (started_at) up to its last change
// (updated_at), so the same job always reads the same.
//
// Thread safety: plain functions; a PlainLineFilter or TransferMeter is not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "exportjobs/v1/export_job.pb.h"

namespace exportd::exportctl {

// One line about the job, without control characters, e.g.
//   "pending"
//   "processing  records 1,200 / 5,000 (24.0%)  parts 1  rate 3,400/s  ETA 1s"
//   "completed  records 5,000  parts 2  1.2 MiB"
//   "failed: <error message>"
//   "cancelled"
std::string JobProgressText(const exportjobs::v1::ExportJob& job);

// Records per second of a processing job since its claim; nullopt when it cannot be told
// (not processing, no time passed, nothing processed).
std::optional<double> JobRecordRate(const exportjobs::v1::ExportJob& job);

// The live form of `text` for a terminal `width` characters wide: "\r", the text cut to
// width - 1 characters (a full line would wrap), "\x1b[K". Printable(text) is used, so the
// text itself cannot add control characters.
std::string LiveLine(std::string_view text, int width);

// What to print of a stream of plain lines: each line once, skipping a line equal to the one
// before.
class PlainLineFilter {
 public:
  // True when `line` differs from the last one passed in (which it then becomes).
  bool ShouldPrint(const std::string& line);

 private:
  std::optional<std::string> last_;
};

// The rate of a transfer, measured on the caller's clock (only bytes of this run count).
class TransferMeter {
 public:
  TransferMeter(int64_t start_bytes, absl::Time start) : start_bytes_(start_bytes), start_(start) {}

  // Bytes per second from the start to `now` with `done_bytes` done; nullopt before 200 ms.
  std::optional<double> Rate(int64_t done_bytes, absl::Time now) const;

 private:
  int64_t start_bytes_;
  absl::Time start_;
};

// One line about a download, e.g.
//   "export.csv  12.3 MiB / 45.6 MiB (27.0%)  3.4 MiB/s  ETA 10s"
// rate: bytes per second, or nullopt when not known yet.
std::string DownloadProgressText(std::string_view name, int64_t done_bytes, int64_t total_bytes,
                                 std::optional<double> rate);

}  // namespace exportd::exportctl
