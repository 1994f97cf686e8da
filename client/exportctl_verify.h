// Verification of downloaded bytes against a completed job's parts manifest.
//
// A completed job lists its parts in order, each with its size and the SHA-256 of its bytes;
// the whole file is the parts joined, so the sizes tell where each part starts. PartsToFetch
// turns the manifest into the spans of the file (or the one part) being downloaded, and a
// PartVerifier checks bytes fed to it in order: every time a part's last byte arrives, that
// part's SHA-256 is compared with the manifest. Too many bytes, too few, or a different digest
// is DATA_LOSS naming the part and its byte range.
//
// Thread safety: PartVerifier is not thread-safe.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "exportjobs/v1/export_job.pb.h"

namespace exportd::exportctl {

// One part of the downloaded file: its number in the job, where it starts in the downloaded
// file, its size and SHA-256 (lowercase hex), and its own signed URL.
struct PartSpan {
  int number = 0;
  int64_t offset = 0;
  int64_t size = 0;
  std::string sha256;
  std::string download_url;
};

// The spans of what a download of `part` gets: every part of the file for part 0 (offsets
// from 0, one after the other), or part `part` alone (offset 0).
// Errors: FAILED_PRECONDITION when the job is not completed; INVALID_ARGUMENT when the job has
// no such part; DATA_LOSS when the manifest does not add up (parts not numbered 1..n, sizes
// not summing to file_size_bytes, a negative size, a digest that is not 64 hex digits).
absl::StatusOr<std::vector<PartSpan>> PartsToFetch(const exportjobs::v1::ExportJob& job, int part);

// The total size of `spans`.
int64_t SpansSize(const std::vector<PartSpan>& spans);

// The lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

class PartVerifier {
 public:
  // REQUIRES: spans as PartsToFetch returns them (contiguous from offset 0).
  explicit PartVerifier(std::vector<PartSpan> spans);
  ~PartVerifier();

  PartVerifier(const PartVerifier&) = delete;
  PartVerifier& operator=(const PartVerifier&) = delete;

  // Feeds the next bytes. DATA_LOSS when a part completed by them has another SHA-256 than the
  // manifest's, or when they run past the end; the verifier is then spent (every later call
  // returns the same error).
  [[nodiscard]] absl::Status Update(std::string_view bytes);

  // OK when exactly the manifest's bytes were fed and every part matched; DATA_LOSS otherwise.
  [[nodiscard]] absl::Status Finish();

  // Starts over from byte 0.
  void Reset();

  // Forgets the bytes fed after the last verified part: the position becomes verified_end().
  void RewindToVerifiedEnd();

  // Bytes fed so far.
  int64_t position() const { return position_; }
  // Parts whose bytes all arrived and matched.
  int parts_verified() const { return static_cast<int>(current_); }
  // Where the first part not yet verified starts (the end of the verified parts).
  int64_t verified_end() const;
  int64_t total() const { return total_; }

 private:
  absl::Status FinishPart();

  const std::vector<PartSpan> spans_;
  const int64_t total_;
  size_t current_ = 0;  // The index of the part being fed.
  int64_t position_ = 0;
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> context_;
  absl::Status error_;
};

}  // namespace exportd::exportctl
