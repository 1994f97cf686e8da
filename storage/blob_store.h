// BlobStore: the bytes of export parts. A part is uploaded into a temporary file, verified
// (size and SHA-256), fsynced and renamed into place, so a part that exists is complete. Parts
// are kept per lease epoch, so that a worker that lost its lease can never overwrite the parts
// of the attempt that replaced it.
//
// Thread safety: all methods are thread-safe; a PartUpload is used by one thread at a time (it
// may write in the background between its calls, and waits for that before it is destroyed),
// except that its Hash and Write may run at the same time on two threads.
// Every method does file I/O: never call one on a gRPC callback thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace exportd {

class BlobStore {
 public:
  // One part being written. Destroying it without a successful Commit removes the temporary
  // file.
  class PartUpload {
   public:
    virtual ~PartUpload() = default;
    // Adds `data` to the part (copied: the caller may reuse it). May return before the bytes
    // are written; a failed write shows in a later Append or in Commit.
    // Errors: UNAVAILABLE when the write fails (e.g. the disk is full).
    [[nodiscard]] absl::Status Append(std::string_view data) {
      Hash(data);
      return Write(data);
    }
    // Append's two halves, for a caller that runs them on two threads at once so that hashing
    // and writing overlap: Hash adds the bytes to the part's SHA-256, Write stages and writes
    // them (as Append says). Each must be given every byte of the part, in order, before Commit;
    // Hash may run while Write runs, but neither while itself runs.
    virtual void Hash(std::string_view data) = 0;
    [[nodiscard]] virtual absl::Status Write(std::string_view data) = 0;
    // Checks that the bytes appended have `size_bytes` bytes and the SHA-256 `sha256` (lowercase
    // hex), then makes them the part (replacing an earlier upload of the same part and epoch)
    // durably. Errors: INVALID_ARGUMENT naming the mismatch (nothing is kept); UNAVAILABLE for
    // I/O errors.
    [[nodiscard]] virtual absl::Status Commit(int64_t size_bytes, const std::string& sha256) = 0;
    // Bytes written (appended) so far.
    virtual int64_t size() const = 0;
  };

  virtual ~BlobStore() = default;

  // Starts writing part `part_number` of the job's attempt `epoch`.
  virtual absl::StatusOr<std::unique_ptr<PartUpload>> StartPart(const std::string& job_id,
                                                                int64_t epoch,
                                                                int32_t part_number) = 0;

  // The file that holds a committed part; NOT_FOUND when there is none.
  virtual absl::StatusOr<std::string> PartPath(const std::string& job_id, int64_t epoch,
                                               int32_t part_number) const = 0;

  // Removes the parts of one attempt (all parts when epoch < 0). OK when there are none.
  [[nodiscard]] virtual absl::Status DeleteParts(const std::string& job_id, int64_t epoch) = 0;
};

// The BlobStore in a directory: <dir>/<job id>/<epoch>/<part>.part. Creates the directory and
// removes temporary files a crash left behind. Errors: UNAVAILABLE when the directory cannot be
// created or read.
absl::StatusOr<std::unique_ptr<BlobStore>> OpenFileBlobStore(const std::string& dir);

}  // namespace exportd
