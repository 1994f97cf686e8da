#pragma once

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "exportjobs/v1/worker_service.pb.h"

namespace exportd {

// One UploadExportPartRequest as gRPC received it, read without protobuf's copy of a chunk.
//
// A chunk message holds only its `chunk` field: the field's tag, its length and the bytes. Such a
// message keeps the bytes as the slices gRPC received them in (references, not copies), so a chunk
// reaches the part file with one copy, into the file's staging buffer, instead of two. Any other
// message (a header, a trailer, a chunk with other fields beside it or split into several fields)
// is parsed by protobuf, so every valid encoding means what protobuf says it means.
struct UploadMessage {
  // The item the message holds (kChunk however it was read); ITEM_NOT_SET for none.
  exportjobs::v1::UploadExportPartRequest::ItemCase item =
      exportjobs::v1::UploadExportPartRequest::ITEM_NOT_SET;
  // The message as protobuf parsed it: the header or the trailer. Unused for a chunk.
  exportjobs::v1::UploadExportPartRequest parsed;
  // A chunk's bytes in order, and their total.
  std::vector<grpc::Slice> chunk;
  int64_t chunk_size = 0;
};

// Reads `buffer` into `message` (which it resets first). INVALID_ARGUMENT when the bytes are not
// an UploadExportPartRequest.
absl::Status ReadUploadMessage(const grpc::ByteBuffer& buffer, UploadMessage* message);

}  // namespace exportd
