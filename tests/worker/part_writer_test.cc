// Tests for PartWriter: where parts split, what each part holds, gzip members (each part alone
// and the joined file, with zlib and with gzip(1)), sizes and SHA-256 (against an implementation
// written here), exports without records, and errors.
#include "worker/part_writer.h"

#include <stdio.h>
#include <sys/wait.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"
#include "worker/csv.h"
#include "worker/jsonl.h"

namespace exportd {
namespace {

using ::exportd::testing::StatusIs;
using exportjobs::v1::Compression;
using exportjobs::v1::COMPRESSION_GZIP;
using exportjobs::v1::COMPRESSION_NONE;
using exportjobs::v1::EXPORT_FORMAT_CSV;
using exportjobs::v1::EXPORT_FORMAT_JSONL;
using exportjobs::v1::ExportFormat;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// SHA-256 after FIPS 180-4, independent of the OpenSSL that PartWriter uses.
std::string Sha256Hex(std::string_view data) {
  static constexpr uint32_t kRound[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
      0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
      0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
      0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
      0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
      0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
      0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
      0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2};
  uint32_t hash[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::string message(data);
  const uint64_t bit_length = uint64_t{data.size()} * 8;
  message.push_back('\x80');
  while (message.size() % 64 != 56) message.push_back('\0');
  for (int i = 7; i >= 0; --i) message.push_back(static_cast<char>(bit_length >> (8 * i)));
  auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  for (size_t block = 0; block < message.size(); block += 64) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      w[i] = 0;
      for (int j = 0; j < 4; ++j) {
        w[i] = (w[i] << 8) | static_cast<unsigned char>(message[block + 4 * i + j]);
      }
    }
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = hash[0], b = hash[1], c = hash[2], d = hash[3], e = hash[4], f = hash[5],
             g = hash[6], h = hash[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 =
          h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kRound[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    const uint32_t add[8] = {a, b, c, d, e, f, g, h};
    for (int i = 0; i < 8; ++i) hash[i] += add[i];
  }
  std::string hex;
  for (uint32_t word : hash) absl::StrAppend(&hex, absl::Hex(word, absl::kZeroPad8));
  return hex;
}

TEST(Sha256Test, KnownAnswers) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Inflates `data`, which must be gzip members back to back (one or more, ending exactly at a
// member's end); nullopt when it is not. Sets `*members` to how many there were.
std::optional<std::string> Gunzip(std::string_view data, int* members = nullptr) {
  std::string out;
  int count = 0;
  while (!data.empty()) {
    z_stream stream{};
    if (inflateInit2(&stream, 15 + 16) != Z_OK) return std::nullopt;
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream.avail_in = static_cast<uInt>(data.size());
    int result;
    do {
      char chunk[4096];
      stream.next_out = reinterpret_cast<Bytef*>(chunk);
      stream.avail_out = sizeof(chunk);
      result = inflate(&stream, Z_NO_FLUSH);
      out.append(chunk, sizeof(chunk) - stream.avail_out);
    } while (result == Z_OK);
    const size_t consumed = data.size() - stream.avail_in;
    inflateEnd(&stream);
    if (result != Z_STREAM_END) return std::nullopt;
    data.remove_prefix(consumed);
    ++count;
  }
  if (count == 0) return std::nullopt;  // Not even one member.
  if (members != nullptr) *members = count;
  return out;
}

// `gzip -dc` of the file at `path`: a decompressor that shares no code with zlib's inflate().
std::optional<std::string> GzipDc(const std::string& path) {
  FILE* pipe = popen(absl::StrCat("gzip -dc < '", path, "'").c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof(chunk), pipe)) > 0) out.append(chunk, n);
  const int status = pclose(pipe);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return out;
}

TEST(GunzipTest, RejectsTrailingGarbageAndTruncation) {
  // "hi" as one gzip member, made by gzip(1).
  const std::string member(
      "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\xc8\x04\x00\xac\x2a\x93\xd8\x02\x00\x00\x00",
      22);
  int members = 0;
  EXPECT_EQ(Gunzip(member + member, &members), "hihi");
  EXPECT_EQ(members, 2);
  EXPECT_EQ(Gunzip(member + "x"), std::nullopt);
  EXPECT_EQ(Gunzip(member.substr(0, 20)), std::nullopt);
  EXPECT_EQ(Gunzip(""), std::nullopt);
}

std::vector<Column> TestColumns() {
  return {{"id", catalog::FieldType::FIELD_TYPE_INTEGER},
          {"name", catalog::FieldType::FIELD_TYPE_STRING},
          {"score", catalog::FieldType::FIELD_TYPE_NUMBER},
          {"active", catalog::FieldType::FIELD_TYPE_BOOLEAN},
          {"created_at", catalog::FieldType::FIELD_TYPE_TIMESTAMP}};
}

// Deterministic rows of varied length, with strings that need quoting and escaping.
std::vector<Row> TestRows(int count, uint32_t seed = 1) {
  std::mt19937 random(seed);
  static const std::vector<std::string> kPieces = {
      "Acme", " ", ",", "\"", "\r\n", "\n", "\\", "\xC3\xA9", "x", "Widgets Ltd", "\t"};
  std::vector<Row> rows;
  for (int i = 0; i < count; ++i) {
    std::string name;
    const int pieces = std::uniform_int_distribution<int>(0, 20)(random);
    for (int j = 0; j < pieces; ++j) {
      name += kPieces[std::uniform_int_distribution<size_t>(0, kPieces.size() - 1)(random)];
    }
    Cell score = std::monostate();
    if (i % 3 != 0) score = std::uniform_real_distribution<double>(0, 100)(random);
    rows.push_back({int64_t{i + 1}, name, score, i % 2 == 0,
                    std::string(absl::StrCat("2026-01-", 10 + i % 20, "T09:30:00Z"))});
  }
  return rows;
}

// The encoded records, one string each (the encoders are tested on their own).
std::vector<std::string> EncodedRecords(ExportFormat format, const std::vector<Column>& columns,
                                        const std::vector<Row>& rows) {
  std::vector<std::string> records;
  const jsonl::Encoder encoder(columns);
  for (const Row& row : rows) {
    std::string record;
    if (format == EXPORT_FORMAT_CSV) {
      csv::AppendRecord(row, &record);
    } else {
      encoder.AppendRecord(row, &record);
    }
    records.push_back(std::move(record));
  }
  return records;
}

std::string Header(ExportFormat format, const std::vector<Column>& columns) {
  std::string header;
  if (format == EXPORT_FORMAT_CSV) csv::AppendHeader(columns, &header);
  return header;
}

// A part as on_part saw it, with the file's bytes read at that moment.
struct SeenPart {
  FinishedPart part;
  std::string bytes;
};

// One export through a PartWriter, collecting its parts.
struct Export {
  std::vector<SeenPart> parts;
  int32_t part_count = 0;  // Finish's result.
  int64_t records = 0;
  int64_t bytes_written = 0;
};

PartWriter::Options MakeOptions(ExportFormat format, Compression compression,
                                int64_t part_size_bytes, const std::string& work_dir,
                                std::vector<SeenPart>* parts) {
  PartWriter::Options options;
  options.columns = TestColumns();
  options.format = format;
  options.compression = compression;
  options.part_size_bytes = part_size_bytes;
  options.work_dir = work_dir;
  options.on_part = [parts](const FinishedPart& part) {
    parts->push_back({part, ReadFile(part.path)});
    return absl::OkStatus();
  };
  return options;
}

absl::StatusOr<Export> RunExport(ExportFormat format, Compression compression,
                                 int64_t part_size_bytes, const std::vector<Row>& rows) {
  test_support::TempDir dir;
  Export result;
  absl::StatusOr<std::unique_ptr<PartWriter>> writer = PartWriter::Create(
      MakeOptions(format, compression, part_size_bytes, dir.path(), &result.parts));
  if (!writer.ok()) return writer.status();
  for (const Row& row : rows) {
    absl::Status status = (*writer)->Add(row);
    if (!status.ok()) return status;
  }
  absl::StatusOr<int32_t> part_count = (*writer)->Finish();
  if (!part_count.ok()) return part_count.status();
  result.part_count = *part_count;
  result.records = (*writer)->records();
  result.bytes_written = (*writer)->bytes_written();
  return result;
}

class PartWriterFormatTest
    : public ::testing::TestWithParam<std::tuple<ExportFormat, Compression>> {
 protected:
  ExportFormat format() const { return std::get<0>(GetParam()); }
  Compression compression() const { return std::get<1>(GetParam()); }
  bool gzip() const { return compression() == COMPRESSION_GZIP; }

  // The part's content before compression; checks that a gzip part is exactly one member.
  std::string Content(const SeenPart& seen) const {
    if (!gzip()) return seen.bytes;
    int members = 0;
    std::optional<std::string> content = Gunzip(seen.bytes, &members);
    EXPECT_TRUE(content.has_value()) << "part " << seen.part.part_number << " does not inflate";
    EXPECT_EQ(members, 1) << "part " << seen.part.part_number;
    return content.value_or("");
  }

  // Checks everything that holds for any export of `rows` with `part_size_bytes`.
  void CheckExport(const Export& result, const std::vector<Row>& rows, int64_t part_size_bytes) {
    const std::vector<std::string> records = EncodedRecords(format(), TestColumns(), rows);
    const std::string header = Header(format(), TestColumns());
    std::string expected_file = header;
    for (const std::string& record : records) expected_file += record;

    ASSERT_GE(result.parts.size(), 1u);
    EXPECT_EQ(result.part_count, static_cast<int32_t>(result.parts.size()));
    EXPECT_EQ(result.records, static_cast<int64_t>(rows.size()));
    size_t next_record = 0;
    int64_t bytes_written = 0;
    std::string joined_bytes;
    std::string joined_content;
    for (size_t i = 0; i < result.parts.size(); ++i) {
      const SeenPart& seen = result.parts[i];
      const FinishedPart& part = seen.part;
      SCOPED_TRACE(absl::StrCat("part ", part.part_number));
      EXPECT_EQ(part.part_number, static_cast<int32_t>(i + 1));
      EXPECT_EQ(part.size_bytes, static_cast<int64_t>(seen.bytes.size()));
      EXPECT_EQ(part.sha256, Sha256Hex(seen.bytes));
      bytes_written += part.size_bytes;
      joined_bytes += seen.bytes;

      // The part holds whole records: the header (part 1 only), then record_count records.
      ASSERT_GE(part.record_count, i + 1 == result.parts.size() ? 0 : 1);
      ASSERT_LE(next_record + part.record_count, records.size());
      std::string expected = i == 0 ? header : "";
      for (int64_t r = 0; r < part.record_count; ++r) expected += records[next_record + r];
      const std::string content = Content(seen);
      EXPECT_EQ(content, expected);
      joined_content += content;

      // The split comes at the first record boundary at or after part_size_bytes (counting
      // the header, but never before a part's first record).
      const auto size = static_cast<int64_t>(content.size());
      if (part.record_count > 1) {
        const auto last = static_cast<int64_t>(records[next_record + part.record_count - 1].size());
        EXPECT_LT(size - last, part_size_bytes);
      }
      if (i + 1 < result.parts.size()) {
        EXPECT_GE(size, part_size_bytes);
      }
      next_record += part.record_count;
    }
    EXPECT_EQ(next_record, records.size());
    EXPECT_EQ(result.bytes_written, bytes_written);
    EXPECT_EQ(joined_content, expected_file);
    if (gzip()) {
      EXPECT_EQ(Gunzip(joined_bytes), expected_file);
      test_support::TempDir dir;
      const std::string joined_path = dir.path() + "/joined.gz";
      std::ofstream(joined_path, std::ios::binary) << joined_bytes;
      EXPECT_EQ(GzipDc(joined_path), expected_file);
    } else {
      EXPECT_EQ(joined_bytes, expected_file);
    }
  }
};

TEST_P(PartWriterFormatTest, OnePartWhenPartSizeIsLarge) {
  const std::vector<Row> rows = TestRows(200);
  ASSERT_OK_AND_ASSIGN(Export result, RunExport(format(), compression(), int64_t{1} << 30, rows));
  ASSERT_EQ(result.parts.size(), 1u);
  EXPECT_EQ(result.parts[0].part.record_count, 200);
  CheckExport(result, rows, int64_t{1} << 30);
}

TEST_P(PartWriterFormatTest, SplitsAtRecordBoundaries) {
  const std::vector<Row> rows = TestRows(300);
  for (int64_t part_size : {2, 37, 100, 999, 4096, 20000}) {
    SCOPED_TRACE(absl::StrCat("part_size_bytes ", part_size));
    ASSERT_OK_AND_ASSIGN(Export result, RunExport(format(), compression(), part_size, rows));
    EXPECT_GT(result.parts.size(), 1u);
    CheckExport(result, rows, part_size);
  }
}

TEST_P(PartWriterFormatTest, SplitPartsJoinToTheUnsplitFile) {
  const std::vector<Row> rows = TestRows(500, 7);
  ASSERT_OK_AND_ASSIGN(Export whole, RunExport(format(), compression(), int64_t{1} << 30, rows));
  ASSERT_OK_AND_ASSIGN(Export split, RunExport(format(), compression(), 1500, rows));
  ASSERT_EQ(whole.parts.size(), 1u);
  ASSERT_GT(split.parts.size(), 5u);
  std::string joined;
  for (const SeenPart& seen : split.parts) joined += Content(seen);
  EXPECT_EQ(joined, Content(whole.parts[0]));
}

TEST_P(PartWriterFormatTest, PartSizeOneGivesOneRecordPerPart) {
  const std::vector<Row> rows = TestRows(25);
  ASSERT_OK_AND_ASSIGN(Export result, RunExport(format(), compression(), 1, rows));
  ASSERT_EQ(result.parts.size(), 25u);
  for (const SeenPart& seen : result.parts) EXPECT_EQ(seen.part.record_count, 1);
  CheckExport(result, rows, 1);
}

TEST_P(PartWriterFormatTest, ExactFitEndsWithoutAnEmptyPart) {
  // Part size = the size of part 1 with its first two records: the export of two records ends
  // exactly at the boundary and must not add an empty part 2.
  const std::vector<Row> rows = TestRows(2);
  const std::vector<std::string> records = EncodedRecords(format(), TestColumns(), rows);
  const auto part_size = static_cast<int64_t>(Header(format(), TestColumns()).size() +
                                              records[0].size() + records[1].size());
  ASSERT_OK_AND_ASSIGN(Export result, RunExport(format(), compression(), part_size, rows));
  ASSERT_EQ(result.parts.size(), 1u);
  CheckExport(result, rows, part_size);
}

TEST_P(PartWriterFormatTest, HeaderOnlyInPartOne) {
  const std::vector<Row> rows = TestRows(10);
  ASSERT_OK_AND_ASSIGN(Export result, RunExport(format(), compression(), 1, rows));
  ASSERT_EQ(result.parts.size(), 10u);
  const std::string header = Header(format(), TestColumns());
  if (format() == EXPORT_FORMAT_CSV) {
    EXPECT_THAT(Content(result.parts[0]), StartsWith(header));
  }
  for (size_t i = 1; i < result.parts.size(); ++i) {
    EXPECT_EQ(Content(result.parts[i]).find("id,name,score,active,created_at"), std::string::npos)
        << "part " << i + 1;
  }
}

TEST_P(PartWriterFormatTest, ZeroRecordsStillGivePartOne) {
  ASSERT_OK_AND_ASSIGN(Export result, RunExport(format(), compression(), 1, {}));
  ASSERT_EQ(result.parts.size(), 1u);
  EXPECT_EQ(result.part_count, 1);
  EXPECT_EQ(result.records, 0);
  const FinishedPart& part = result.parts[0].part;
  EXPECT_EQ(part.part_number, 1);
  EXPECT_EQ(part.record_count, 0);
  EXPECT_EQ(Content(result.parts[0]),
            format() == EXPORT_FORMAT_CSV ? "id,name,score,active,created_at\r\n" : "");
  if (gzip()) {
    EXPECT_GT(part.size_bytes, 0);  // A complete, empty gzip member.
  } else if (format() == EXPORT_FORMAT_JSONL) {
    EXPECT_EQ(part.size_bytes, 0);
    EXPECT_EQ(part.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  }
  CheckExport(result, {}, 1);
}

TEST_P(PartWriterFormatTest, RecordsLargerThanTheWriteBuffer) {
  std::vector<Row> rows = TestRows(6);
  std::mt19937 random(99);
  for (Row& row : rows) {
    // 1 MiB of random letters and digits each, which compress to more than a write buffer.
    static constexpr std::string_view kAlphabet =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string big(1 << 20, '\0');
    for (char& c : big) c = kAlphabet[random() % kAlphabet.size()];
    row[1] = std::move(big);
  }
  constexpr int64_t kPartSize = int64_t{5} << 19;  // 2.5 MiB: three records a part.
  ASSERT_OK_AND_ASSIGN(Export result, RunExport(format(), compression(), kPartSize, rows));
  EXPECT_EQ(result.parts.size(), 2u);
  CheckExport(result, rows, kPartSize);
}

TEST_P(PartWriterFormatTest, FilesAreInWorkDirWithTheirFormatsExtension) {
  test_support::TempDir dir;
  std::vector<SeenPart> parts;
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<PartWriter> writer,
      PartWriter::Create(MakeOptions(format(), compression(), 1, dir.path(), &parts)));
  for (const Row& row : TestRows(3)) ASSERT_OK(writer->Add(row));
  ASSERT_OK(writer->Finish());
  const std::string extension =
      absl::StrCat(format() == EXPORT_FORMAT_CSV ? ".csv" : ".jsonl", gzip() ? ".gz" : "");
  ASSERT_EQ(parts.size(), 3u);
  for (const SeenPart& seen : parts) {
    const std::filesystem::path path(seen.part.path);
    EXPECT_EQ(path.parent_path(), std::filesystem::path(dir.path()));
    EXPECT_THAT(path.filename().string(),
                StartsWith(absl::StrCat("part-0000", seen.part.part_number, "-")));
    EXPECT_EQ(path.filename().string().substr(path.filename().string().size() - extension.size()),
              extension);
    EXPECT_TRUE(std::filesystem::exists(path));
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, PartWriterFormatTest,
                         ::testing::Combine(::testing::Values(EXPORT_FORMAT_CSV,
                                                              EXPORT_FORMAT_JSONL),
                                            ::testing::Values(COMPRESSION_NONE, COMPRESSION_GZIP)),
                         [](const ::testing::TestParamInfo<PartWriterFormatTest::ParamType>& info) {
                           return absl::StrCat(
                               std::get<0>(info.param) == EXPORT_FORMAT_CSV ? "Csv" : "Jsonl",
                               std::get<1>(info.param) == COMPRESSION_GZIP ? "Gzip" : "Plain");
                         });

int CountFiles(const std::string& dir) {
  int count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++count;
  return count;
}

TEST(PartWriterTest, StreamsToDiskBeforeThePartIsFinished) {
  test_support::TempDir dir;
  std::vector<SeenPart> parts;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PartWriter> writer,
                       PartWriter::Create(MakeOptions(EXPORT_FORMAT_CSV, COMPRESSION_NONE,
                                                      int64_t{1} << 30, dir.path(), &parts)));
  const std::vector<Row> rows = TestRows(200);
  int64_t encoded = 0;
  for (const std::string& record : EncodedRecords(EXPORT_FORMAT_CSV, TestColumns(), rows)) {
    encoded += static_cast<int64_t>(record.size());
  }
  // Enough records for several MiB, so that a writer keeping the part in memory is caught.
  int64_t added = 0;
  while (added < (int64_t{4} << 20)) {
    for (const Row& row : rows) ASSERT_OK(writer->Add(row));
    added += encoded;
  }
  EXPECT_TRUE(parts.empty());
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    files.push_back(entry.path());
  }
  ASSERT_EQ(files.size(), 1u);
  EXPECT_GT(static_cast<int64_t>(std::filesystem::file_size(files[0])), added - (int64_t{1} << 20));
  ASSERT_OK(writer->Finish());
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].part.record_count, writer->records());
}

TEST(PartWriterTest, UnfinishedPartIsRemovedWhenTheWriterIsDestroyed) {
  test_support::TempDir dir;
  std::vector<SeenPart> parts;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<PartWriter> writer,
                         PartWriter::Create(MakeOptions(EXPORT_FORMAT_CSV, COMPRESSION_GZIP, 1000,
                                                        dir.path(), &parts)));
    for (const Row& row : TestRows(50)) ASSERT_OK(writer->Add(row));
    ASSERT_GT(parts.size(), 1u);
    EXPECT_EQ(CountFiles(dir.path()), static_cast<int>(parts.size()) + 1);
  }
  // The finished parts are on_part's; only the unfinished one is gone.
  EXPECT_EQ(CountFiles(dir.path()), static_cast<int>(parts.size()));
}

TEST(PartWriterTest, FailingOnPartStopsTheExportWithItsError) {
  test_support::TempDir dir;
  int calls = 0;
  PartWriter::Options options;
  options.columns = TestColumns();
  options.part_size_bytes = 1;
  options.work_dir = dir.path();
  options.on_part = [&calls](const FinishedPart& part) {
    ++calls;
    if (part.part_number == 2) return absl::ResourceExhaustedError("upload quota exceeded");
    return absl::OkStatus();
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PartWriter> writer, PartWriter::Create(std::move(options)));
  const std::vector<Row> rows = TestRows(4);
  ASSERT_OK(writer->Add(rows[0]));
  EXPECT_THAT(writer->Add(rows[1]),
              StatusIs(absl::StatusCode::kResourceExhausted, "upload quota exceeded"));
  EXPECT_THAT(writer->Add(rows[2]),
              StatusIs(absl::StatusCode::kResourceExhausted, "upload quota exceeded"));
  EXPECT_THAT(writer->Finish(),
              StatusIs(absl::StatusCode::kResourceExhausted, "upload quota exceeded"));
  EXPECT_EQ(calls, 2);
}

TEST(PartWriterTest, FailingOnPartForTheLastPartFailsFinish) {
  test_support::TempDir dir;
  int calls = 0;
  PartWriter::Options options;
  options.columns = TestColumns();
  options.format = EXPORT_FORMAT_JSONL;
  options.compression = COMPRESSION_GZIP;
  options.work_dir = dir.path();
  options.on_part = [&calls](const FinishedPart&) {
    ++calls;
    return absl::AbortedError("lease lost");
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PartWriter> writer, PartWriter::Create(std::move(options)));
  for (const Row& row : TestRows(5)) ASSERT_OK(writer->Add(row));
  EXPECT_THAT(writer->Finish(), StatusIs(absl::StatusCode::kAborted, "lease lost"));
  EXPECT_THAT(writer->Finish(), StatusIs(absl::StatusCode::kAborted, "lease lost"));
  EXPECT_EQ(calls, 1);
}

TEST(PartWriterTest, AddAfterFinishFails) {
  test_support::TempDir dir;
  std::vector<SeenPart> parts;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PartWriter> writer,
                       PartWriter::Create(MakeOptions(EXPORT_FORMAT_CSV, COMPRESSION_NONE, 100,
                                                      dir.path(), &parts)));
  ASSERT_OK(writer->Add(TestRows(1)[0]));
  EXPECT_THAT(writer->Finish(), ::exportd::testing::IsOkAndHolds(1));
  EXPECT_THAT(writer->Add(TestRows(1)[0]), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(writer->Finish(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(parts.size(), 1u);
}

TEST(PartWriterTest, RowOfTheWrongWidthIsRefusedAndTheExportGoesOn) {
  test_support::TempDir dir;
  std::vector<SeenPart> parts;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PartWriter> writer,
                       PartWriter::Create(MakeOptions(EXPORT_FORMAT_JSONL, COMPRESSION_NONE, 100,
                                                      dir.path(), &parts)));
  EXPECT_THAT(writer->Add({int64_t{1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 cells for 5 columns")));
  ASSERT_OK(writer->Add(TestRows(1)[0]));
  ASSERT_OK(writer->Finish());
  EXPECT_EQ(writer->records(), 1);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].part.record_count, 1);
}

TEST(PartWriterTest, MissingWorkDirIsUnavailable) {
  test_support::TempDir dir;
  std::vector<SeenPart> parts;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PartWriter> writer,
                       PartWriter::Create(MakeOptions(EXPORT_FORMAT_CSV, COMPRESSION_NONE, 100,
                                                      dir.path() + "/does-not-exist", &parts)));
  EXPECT_THAT(writer->Add(TestRows(1)[0]),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("does-not-exist")));
  EXPECT_THAT(writer->Finish(), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(PartWriterTest, CountersFollowTheExport) {
  test_support::TempDir dir;
  std::vector<SeenPart> parts;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PartWriter> writer,
                       PartWriter::Create(MakeOptions(EXPORT_FORMAT_CSV, COMPRESSION_NONE, 500,
                                                      dir.path(), &parts)));
  int64_t added = 0;
  for (const Row& row : TestRows(100)) {
    ASSERT_OK(writer->Add(row));
    EXPECT_EQ(writer->records(), ++added);
    int64_t finished_bytes = 0;
    for (const SeenPart& seen : parts) finished_bytes += seen.part.size_bytes;
    EXPECT_EQ(writer->bytes_written(), finished_bytes);
  }
}

class PartWriterCreateTest : public ::testing::Test {
 protected:
  PartWriter::Options ValidOptions() {
    return MakeOptions(EXPORT_FORMAT_CSV, COMPRESSION_NONE, 100, dir_.path(), &parts_);
  }

  test_support::TempDir dir_;
  std::vector<SeenPart> parts_;
};

TEST_F(PartWriterCreateTest, ValidOptions) { EXPECT_OK(PartWriter::Create(ValidOptions())); }

TEST_F(PartWriterCreateTest, UnspecifiedFormatAndCompressionAreTheDefaults) {
  PartWriter::Options options = ValidOptions();
  options.format = exportjobs::v1::EXPORT_FORMAT_UNSPECIFIED;
  options.compression = exportjobs::v1::COMPRESSION_UNSPECIFIED;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PartWriter> writer, PartWriter::Create(std::move(options)));
  ASSERT_OK(writer->Finish());
  ASSERT_EQ(parts_.size(), 1u);
  EXPECT_EQ(parts_[0].bytes, "id,name,score,active,created_at\r\n");
}

TEST_F(PartWriterCreateTest, NoColumns) {
  PartWriter::Options options = ValidOptions();
  options.columns.clear();
  EXPECT_THAT(PartWriter::Create(std::move(options)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("columns")));
}

TEST_F(PartWriterCreateTest, PartSizeBelowOne) {
  for (int64_t size : {int64_t{0}, int64_t{-1}}) {
    PartWriter::Options options = ValidOptions();
    options.part_size_bytes = size;
    EXPECT_THAT(PartWriter::Create(std::move(options)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("part_size_bytes")));
  }
}

TEST_F(PartWriterCreateTest, UnknownFormat) {
  PartWriter::Options options = ValidOptions();
  options.format = static_cast<ExportFormat>(99);
  EXPECT_THAT(PartWriter::Create(std::move(options)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("format")));
}

TEST_F(PartWriterCreateTest, UnknownCompression) {
  PartWriter::Options options = ValidOptions();
  options.compression = static_cast<Compression>(99);
  EXPECT_THAT(PartWriter::Create(std::move(options)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("compression")));
}

TEST_F(PartWriterCreateTest, NoWorkDir) {
  PartWriter::Options options = ValidOptions();
  options.work_dir.clear();
  EXPECT_THAT(PartWriter::Create(std::move(options)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("work_dir")));
}

TEST_F(PartWriterCreateTest, NoOnPart) {
  PartWriter::Options options = ValidOptions();
  options.on_part = nullptr;
  EXPECT_THAT(PartWriter::Create(std::move(options)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("on_part")));
}

TEST_F(PartWriterCreateTest, DuplicateColumnInJsonLines) {
  PartWriter::Options options = ValidOptions();
  options.format = EXPORT_FORMAT_JSONL;
  options.columns.push_back({"name", catalog::FieldType::FIELD_TYPE_STRING});
  EXPECT_THAT(PartWriter::Create(std::move(options)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"name\" appears twice")));
}

}  // namespace
}  // namespace exportd
