#include "server/upload_message.h"

#include <algorithm>
#include <string>
#include <utility>

namespace exportd {
namespace {

using exportjobs::v1::UploadExportPartRequest;

// The `chunk` field's tag: field number 2, wire type 2 (length-delimited).
constexpr uint8_t kChunkTag = (UploadExportPartRequest::kChunkFieldNumber << 3) | 2;
// A tag byte and a length of at most 10 varint bytes.
constexpr size_t kMaxPrefixBytes = 11;

// Decodes a varint from [*at, end); false when it does not end there or is longer than 10 bytes.
bool ReadVarint(const uint8_t** at, const uint8_t* end, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64 && *at < end; shift += 7) {
    const uint8_t byte = *(*at)++;
    *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

// Parses the whole message with protobuf (every encoding other than a lone chunk field).
absl::Status ParseWhole(const std::vector<grpc::Slice>& slices, UploadMessage* message) {
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  if (!message->parsed.ParseFromString(bytes)) {
    return absl::InvalidArgumentError(
        "request: the message is not an UploadExportPartRequest (its bytes do not parse)");
  }
  message->item = message->parsed.item_case();
  if (message->item == UploadExportPartRequest::kChunk) {
    std::string* chunk = message->parsed.mutable_chunk();
    message->chunk_size = static_cast<int64_t>(chunk->size());
    if (!chunk->empty()) message->chunk.emplace_back(chunk->data(), chunk->size());
    chunk->clear();
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadUploadMessage(const grpc::ByteBuffer& buffer, UploadMessage* message) {
  message->item = UploadExportPartRequest::ITEM_NOT_SET;
  message->parsed.Clear();
  message->chunk.clear();
  message->chunk_size = 0;

  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) {
    return absl::InvalidArgumentError("request: the message could not be read");
  }
  // The first bytes, gathered across slices: the tag and the length.
  uint8_t prefix[kMaxPrefixBytes];
  size_t prefix_size = 0;
  for (const grpc::Slice& slice : slices) {
    const size_t n = std::min(slice.size(), kMaxPrefixBytes - prefix_size);
    std::copy(slice.begin(), slice.begin() + n, prefix + prefix_size);
    prefix_size += n;
    if (prefix_size == kMaxPrefixBytes) break;
  }
  const uint8_t* at = prefix + 1;
  uint64_t length = 0;
  if (prefix_size == 0 || prefix[0] != kChunkTag ||
      !ReadVarint(&at, prefix + prefix_size, &length) ||
      length + static_cast<uint64_t>(at - prefix) != buffer.Length()) {
    return ParseWhole(slices, message);
  }
  // A lone chunk field: the bytes after the prefix, as sub-slices of what gRPC received.
  size_t skip = static_cast<size_t>(at - prefix);
  for (grpc::Slice& slice : slices) {
    if (skip >= slice.size()) {
      skip -= slice.size();
      continue;
    }
    message->chunk.push_back(skip == 0 ? std::move(slice) : slice.sub(skip, slice.size()));
    skip = 0;
  }
  message->chunk_size = static_cast<int64_t>(length);
  message->item = UploadExportPartRequest::kChunk;
  return absl::OkStatus();
}

}  // namespace exportd
