// Resuming downloads: what exportctl keeps next to an unfinished download, and what it asks the
// server for when it continues.
//
// A download to FILE writes FILE.partial and, beside it, the sidecar FILE.partial.json:
//   {"job_id":"...","part":0,"size_bytes":12345,"etag":"\"...\""}
// (the job and part being downloaded, the size of the whole download, and the ETag the server
// sent; "" for a gRPC download). A later run for the same job, part and size keeps the partial
// bytes and asks only for the rest: `Range: bytes=<kept>-` with `If-Range: <etag>`, so that a
// server whose file changed answers 200 with the whole file instead of a range of another one.
// Anything else (no sidecar, another job or part, more bytes than the download has) starts
// over. The kept bytes are verified like the rest (see exportctl_verify.h).
//
// Thread safety: plain functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace exportd::exportctl {

struct PartialInfo {
  std::string job_id;
  int part = 0;
  int64_t size_bytes = 0;
  std::string etag;

  bool operator==(const PartialInfo&) const = default;
};

// FILE.partial and FILE.partial.json.
std::string PartialPath(std::string_view destination);
std::string SidecarPath(std::string_view destination);

// The sidecar's text (one JSON object and a newline), and back.
// Errors: INVALID_ARGUMENT when the text is not such an object.
std::string EncodeSidecar(const PartialInfo& info);
absl::StatusOr<PartialInfo> DecodeSidecar(std::string_view text);

// What to do with an existing partial file of `partial_size` bytes.
struct ResumePlan {
  // Bytes of the partial file to keep; 0: start over (the file is truncated).
  int64_t keep_bytes = 0;
  // The ETag to send as If-Range; empty: none.
  std::string if_range;
  // Why the partial file is not kept, for a note to the user; empty when it is kept or there
  // was nothing to keep.
  std::string discard_reason;
};

// `sidecar`: the sidecar read next to the partial file (nullopt when there was none or it
// could not be read); `want`: the download about to start (its etag is ignored).
ResumePlan PlanResume(const std::optional<PartialInfo>& sidecar, int64_t partial_size,
                      const PartialInfo& want);

// The headers of a GET that continues at `offset`: none for 0; else Range (and If-Range when
// `etag` is not empty).
std::vector<std::pair<std::string, std::string>> ResumeHeaders(int64_t offset,
                                                               std::string_view etag);

// How to treat the answer to a GET sent with ResumeHeaders(offset, ...).
enum class ResponseAction {
  kAppend,   // The body continues the partial file at `offset`.
  kRestart,  // The body is the whole download: truncate the partial file and start over.
};
// `status`: the HTTP status; `content_range`: its Content-Range header ("" when absent);
// `total`: the size of the whole download.
// Errors (all carry exit code kExitHttp): the server's refusal for statuses other than 200 and
// 206 (see HttpStatusError; `body` is its explanation); DATA_LOSS for a 206 whose range is not
// the one asked for.
absl::StatusOr<ResponseAction> DecideResponse(int status, std::string_view content_range,
                                              int64_t offset, int64_t total,
                                              std::string_view body = {});

// An HTTP error status as a Status with exit code kExitHttp: 403 PERMISSION_DENIED, 404
// NOT_FOUND, 409 and 410 FAILED_PRECONDITION, 416 OUT_OF_RANGE, 5xx UNAVAILABLE, others
// UNKNOWN; the message says "HTTP <status>" and the first line of `body`.
absl::Status HttpStatusError(int status, std::string_view body);

}  // namespace exportd::exportctl
