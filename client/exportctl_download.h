// exportctl download: a completed job's file (or one part) to a local file, verified against
// the job's parts manifest, resumable, and written atomically.
//
// How a download to FILE runs:
//   1. FILE must not exist unless `force`: ALREADY_EXISTS, exit kExitLocalFile.
//   2. The bytes go to FILE.partial, with the sidecar FILE.partial.json saying what they are
//      (exportctl_resume.h). Bytes kept from an earlier run of the same download are verified
//      first; a corrupt part among them removes the partial file (DATA_LOSS, kExitVerification).
//   3. Over HTTP (the job's signed download_url, or the part's URL) the rest is asked for with
//      Range + If-Range; a 200 instead of 206 starts over. Over gRPC (DownloadExport) the file
//      is fetched part by part, and a resumed download keeps the whole verified parts.
//   4. Every byte goes through a PartVerifier: a part whose SHA-256 or size differs from the
//      manifest stops the download, removes FILE.partial and its sidecar, and leaves FILE as it
//      was (DATA_LOSS, kExitVerification).
//   5. A broken transfer (HTTP error, lost connection, gRPC error, interruption) keeps
//      FILE.partial and its sidecar, synced, for the next run to resume.
//   6. When all bytes are verified: fsync FILE.partial, rename it to FILE (refusing to replace
//      a FILE that appeared meanwhile unless `force`), fsync the directory, remove the sidecar.
//
// Thread safety: DownloadFile is not thread-safe with other downloads to the same FILE; the
// callbacks are called on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "exportjobs/v1/export_job.pb.h"

namespace exportd::exportctl {

struct DownloadRequest {
  // 0: the whole file; N: part N alone.
  int part = 0;
  // The local file; empty: DefaultDestination(job, part) in the current directory.
  std::string destination;
  // Replace an existing destination.
  bool force = false;
  // The limit on connecting and on each wait for more bytes (HTTP).
  absl::Duration timeout = absl::Seconds(30);
};

// "<job id>.csv", "<job id>.jsonl.gz", "<job id>.part2.csv", ...
std::string DefaultDestination(const exportjobs::v1::ExportJob& job, int part);

// Fetches part `part` (from 1) over gRPC, passing each chunk to `sink` in order; a sink error
// stops it and is returned. (ExportClient::Download in exportctl; a fake in tests.)
using GrpcPartFetcher = std::function<absl::Status(
    int part, const std::function<absl::Status(std::string_view chunk)>& sink)>;

// What a download tells its user while it runs; every method may be left as is.
class DownloadObserver {
 public:
  virtual ~DownloadObserver() = default;
  // A line of information (resuming, starting over, why a partial file was dropped).
  virtual void Note(std::string_view text) {}
  // `done` of `total` bytes are in FILE.partial (kept and fetched).
  virtual void Progress(int64_t done, int64_t total) {}
  // The transfer ended (well or not); a progress display ends its line.
  virtual void Finished() {}
};

struct DownloadResult {
  std::string path;
  int64_t size_bytes = 0;
  int parts_verified = 0;
  // Bytes kept from an earlier run (0 when it started from the beginning).
  int64_t resumed_from = 0;
  // Bytes fetched by this run.
  int64_t fetched_bytes = 0;
  // The HTTP status of the transfer (200 or 206); 0 when none was needed or over gRPC.
  int http_status = 0;
};

// Downloads `job` (which must be COMPLETED, with its parts manifest) as described above: over
// gRPC with `grpc` when it is set, else over HTTP. `cancelled` is polled between chunks: once it
// returns true the download stops with CANCELLED (kExitInterrupted), keeping FILE.partial.
// Errors carry their exit codes (exportctl_exit.h).
absl::StatusOr<DownloadResult> DownloadFile(const exportjobs::v1::ExportJob& job,
                                            const DownloadRequest& request,
                                            const GrpcPartFetcher* grpc, DownloadObserver& observer,
                                            const std::function<bool()>& cancelled);

}  // namespace exportd::exportctl
