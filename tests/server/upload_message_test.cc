// ReadUploadMessage: a lone chunk field keeps the received slices (no copy), split anywhere;
// every other encoding means what protobuf says; bytes that are not a message are refused.
#include "server/upload_message.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace exportd::testing {
namespace {

using exportjobs::v1::UploadExportPartRequest;

// A ByteBuffer of `bytes` in slices that end at `cuts` (offsets, ascending).
grpc::ByteBuffer Buffer(const std::string& bytes, const std::vector<size_t>& cuts = {}) {
  std::vector<grpc::Slice> slices;
  size_t begin = 0;
  for (size_t cut : cuts) {
    slices.emplace_back(bytes.data() + begin, cut - begin);
    begin = cut;
  }
  slices.emplace_back(bytes.data() + begin, bytes.size() - begin);
  return grpc::ByteBuffer(slices.data(), slices.size());
}

std::string Joined(const UploadMessage& message) {
  std::string bytes;
  for (const grpc::Slice& slice : message.chunk) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

std::string ChunkMessage(const std::string& chunk) {
  UploadExportPartRequest request;
  request.set_chunk(chunk);
  return request.SerializeAsString();
}

std::string Pattern(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 131 + 7) % 251);
  return bytes;
}

TEST(UploadMessageTest, ALoneChunkKeepsTheReceivedBytesWithoutACopy) {
  const std::string chunk = Pattern(1 << 20);
  const grpc::ByteBuffer buffer = Buffer(ChunkMessage(chunk));
  std::vector<grpc::Slice> received;
  ASSERT_TRUE(buffer.Dump(&received).ok());
  ASSERT_EQ(received.size(), 1u);

  UploadMessage message;
  ASSERT_THAT(ReadUploadMessage(buffer, &message), IsOk());
  EXPECT_EQ(message.item, UploadExportPartRequest::kChunk);
  EXPECT_EQ(message.chunk_size, static_cast<int64_t>(chunk.size()));
  ASSERT_EQ(message.chunk.size(), 1u);
  // The chunk is the received slice's memory after the 4-byte prefix (tag, 3-byte length).
  EXPECT_EQ(message.chunk[0].begin(), received[0].begin() + 4);
  EXPECT_EQ(Joined(message), chunk);
}

TEST(UploadMessageTest, AChunkSplitAnywhereReadsTheSame) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{127}, size_t{128}, size_t{16383}, size_t{16384},
                      size_t{70000}}) {
    const std::string chunk = Pattern(size);
    const std::string bytes = ChunkMessage(chunk);
    // One cut at every offset of the prefix and a little beyond, then cuts every 4 KiB.
    for (size_t first = 1; first < std::min<size_t>(bytes.size(), 8); ++first) {
      std::vector<size_t> cuts = {first};
      for (size_t at = first + 4096; at < bytes.size(); at += 4096) cuts.push_back(at);
      UploadMessage message;
      ASSERT_THAT(ReadUploadMessage(Buffer(bytes, cuts), &message), IsOk())
          << size << " bytes, first cut " << first;
      EXPECT_EQ(message.item, UploadExportPartRequest::kChunk);
      EXPECT_EQ(message.chunk_size, static_cast<int64_t>(size));
      EXPECT_EQ(Joined(message), chunk) << size << " bytes, first cut " << first;
    }
  }
}

TEST(UploadMessageTest, HeadersAndTrailersAreParsed) {
  UploadExportPartRequest header;
  header.mutable_header()->set_job_id("job-1");
  header.mutable_header()->set_lease_token("token");
  header.mutable_header()->set_part_number(3);
  UploadMessage message;
  ASSERT_THAT(ReadUploadMessage(Buffer(header.SerializeAsString(), {1}), &message), IsOk());
  EXPECT_EQ(message.item, UploadExportPartRequest::kHeader);
  EXPECT_EQ(message.parsed.header().job_id(), "job-1");
  EXPECT_EQ(message.parsed.header().part_number(), 3);
  EXPECT_TRUE(message.chunk.empty());

  UploadExportPartRequest trailer;
  trailer.mutable_trailer()->set_size_bytes(12);
  trailer.mutable_trailer()->set_sha256(std::string(64, 'a'));
  ASSERT_THAT(ReadUploadMessage(Buffer(trailer.SerializeAsString()), &message), IsOk());
  EXPECT_EQ(message.item, UploadExportPartRequest::kTrailer);
  EXPECT_EQ(message.parsed.trailer().size_bytes(), 12);

  ASSERT_THAT(ReadUploadMessage(Buffer(""), &message), IsOk());
  EXPECT_EQ(message.item, UploadExportPartRequest::ITEM_NOT_SET);
}

TEST(UploadMessageTest, OtherEncodingsOfAChunkMeanWhatProtobufSays) {
  UploadMessage message;
  // A chunk followed by an unknown field (field 15, varint 1).
  std::string with_unknown = ChunkMessage("abc") + std::string("\x78\x01", 2);
  ASSERT_THAT(ReadUploadMessage(Buffer(with_unknown), &message), IsOk());
  EXPECT_EQ(message.item, UploadExportPartRequest::kChunk);
  EXPECT_EQ(Joined(message), "abc");
  EXPECT_EQ(message.chunk_size, 3);

  // The field twice: the last one counts.
  ASSERT_THAT(ReadUploadMessage(Buffer(ChunkMessage("first") + ChunkMessage("second")), &message),
              IsOk());
  EXPECT_EQ(Joined(message), "second");
  EXPECT_EQ(message.chunk_size, 6);

  // A chunk, then a header: the oneof holds the header.
  UploadExportPartRequest header;
  header.mutable_header()->set_job_id("job-2");
  ASSERT_THAT(ReadUploadMessage(Buffer(ChunkMessage("abc") + header.SerializeAsString()), &message),
              IsOk());
  EXPECT_EQ(message.item, UploadExportPartRequest::kHeader);
  EXPECT_EQ(message.parsed.header().job_id(), "job-2");
  EXPECT_TRUE(message.chunk.empty());
  EXPECT_EQ(message.chunk_size, 0);
}

TEST(UploadMessageTest, BytesThatAreNotAMessageAreInvalidArgument) {
  UploadMessage message;
  // A chunk whose length runs past the end.
  std::string truncated = ChunkMessage(Pattern(300));
  truncated.resize(truncated.size() - 1);
  EXPECT_THAT(ReadUploadMessage(Buffer(truncated), &message),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("request")));
  // A length that never ends.
  EXPECT_THAT(ReadUploadMessage(Buffer(std::string("\x12") + std::string(12, '\xff')), &message),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("request")));
  // A field number 0.
  EXPECT_THAT(ReadUploadMessage(Buffer(std::string("\x02\x01x", 3)), &message),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("request")));
}

}  // namespace
}  // namespace exportd::testing
