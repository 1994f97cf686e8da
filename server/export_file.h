// ExportFile: what a download of a completed job (or one of its parts) serves: the part files in
// order, their sizes, and the HTTP metadata. Shared by the HTTP download handler and the gRPC
// DownloadExport stream.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/blob_store.h"
#include "storage/job_store.h"

namespace exportd {

struct ExportFile {
  struct Piece {
    std::string path;
    int64_t size_bytes = 0;
  };
  // The whole file is the pieces joined in order.
  std::vector<Piece> pieces;
  int64_t size_bytes = 0;
  // "text/csv; charset=utf-8", "application/x-ndjson" or "application/gzip".
  std::string content_type;
  // e.g. "<job id>.csv", "<job id>.part-2.jsonl.gz".
  std::string filename;
  // A strong validator: the same bytes have the same ETag (quoted).
  std::string etag;
};

// Resolves part `part` (0 for the whole file) of a completed job. Reads only the file system.
// Errors: FAILED_PRECONDITION when the job is not completed; NOT_FOUND when the part number is
// not in the manifest or a part file is missing; DEADLINE_EXCEEDED when the job's expires_at
// has passed at `now`.
absl::StatusOr<ExportFile> ResolveExportFile(const JobRecord& record, int32_t part,
                                             const BlobStore& blobs, absl::Time now);

}  // namespace exportd
