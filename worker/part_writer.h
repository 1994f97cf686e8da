// PartWriter: turns an export's rows into the export file's parts. Rows are encoded as CSV
// (RFC 4180, header row in part 1 only) or JSON Lines; a new part starts at the first record
// boundary at or after `part_size_bytes` of encoded output (measured before compression); with
// gzip each part is one complete gzip member, so the parts joined in order are one valid file.
// Each finished part is written to a file in `work_dir` and handed to `on_part`.
//
// Thread safety: not thread-safe; one writer per job.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "exportjobs/v1/export_job.pb.h"
#include "worker/row.h"

namespace exportd {

struct FinishedPart {
  int32_t part_number = 0;  // From 1.
  std::string path;         // A file in work_dir; the callee may delete it.
  int64_t size_bytes = 0;   // Bytes in the file (after compression).
  int64_t record_count = 0;
  std::string sha256;  // Lowercase hex of the file's bytes.
};

class PartWriter {
 public:
  struct Options {
    std::vector<Column> columns;
    exportjobs::v1::ExportFormat format = exportjobs::v1::EXPORT_FORMAT_CSV;
    exportjobs::v1::Compression compression = exportjobs::v1::COMPRESSION_NONE;
    int64_t part_size_bytes = int64_t{64} << 20;
    std::string work_dir;
    // Called for each part as it is finished; an error stops the export and is returned by
    // Add or Finish.
    std::function<absl::Status(const FinishedPart&)> on_part;
  };

  // Errors: INVALID_ARGUMENT for unusable options (no columns, part size < 1, unknown format).
  static absl::StatusOr<std::unique_ptr<PartWriter>> Create(Options options);
  virtual ~PartWriter() = default;

  // Appends one record. REQUIRES: row.size() == columns.size().
  [[nodiscard]] virtual absl::Status Add(const Row& row) = 0;

  // Finishes the last part (an export without records still has part 1: the CSV header, or an
  // empty JSON Lines file). Returns the number of parts.
  virtual absl::StatusOr<int32_t> Finish() = 0;

  virtual int64_t records() const = 0;
  // Bytes of finished parts so far (after compression).
  virtual int64_t bytes_written() const = 0;
};

}  // namespace exportd
