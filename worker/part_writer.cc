#include "worker/part_writer.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/csv.h"
#include "worker/jsonl.h"

namespace exportd {
namespace {

using exportjobs::v1::Compression;
using exportjobs::v1::ExportFormat;

// Compressed (or, without compression, encoded) bytes are gathered here and written to the part
// file in chunks of this size.
constexpr size_t kWriteBufferSize = size_t{256} << 10;

absl::Status IoError(const char* what, const std::string& path, int error) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(error)));
}

struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
};

// The writer. A part is opened on the first record after the previous one was finished (or by
// Finish for an export without records), so that no empty trailing part is ever produced; it is
// finished as soon as its encoded size reaches part_size_bytes. Every failure is sticky: the
// unfinished part file is removed and each later call returns the same error.
class PartWriterImpl final : public PartWriter {
 public:
  PartWriterImpl(Options options, bool csv, bool gzip)
      : options_(std::move(options)), csv_(csv), gzip_(gzip), buffer_(new char[kWriteBufferSize]) {
    if (csv_) {
      csv::AppendHeader(options_.columns, &header_);
    } else {
      jsonl_.emplace(options_.columns);
    }
  }

  ~PartWriterImpl() override {
    AbandonPart();
    if (deflate_initialized_) deflateEnd(&zstream_);
  }

  PartWriterImpl(const PartWriterImpl&) = delete;
  PartWriterImpl& operator=(const PartWriterImpl&) = delete;

  // The fallible part of construction, called once by Create.
  [[nodiscard]] absl::Status Init() {
    sha256_.reset(EVP_MD_CTX_new());
    if (sha256_ == nullptr) return absl::ResourceExhaustedError("EVP_MD_CTX_new failed");
    if (gzip_) {
      // windowBits 15 + 16: a gzip wrapper (header with mtime 0, deflate data, CRC-32 and size
      // trailer) around each part; deflateReset starts the next member.
      const int result = deflateInit2(&zstream_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                                      Z_DEFAULT_STRATEGY);
      if (result != Z_OK) return absl::ResourceExhaustedError(DeflateError("deflateInit2", result));
      deflate_initialized_ = true;
    }
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status Add(const Row& row) override {
    if (!error_.ok()) return error_;
    if (finished_) return absl::FailedPreconditionError("Add after Finish");
    if (row.size() != options_.columns.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("row has ", row.size(), " cells for ", options_.columns.size(), " columns"));
    }
    return Fail(AddRecord(row));
  }

  absl::StatusOr<int32_t> Finish() override {
    if (!error_.ok()) return error_;
    if (finished_) return absl::FailedPreconditionError("Finish called twice");
    finished_ = true;
    absl::Status status;
    if (fd_ < 0 && part_number_ == 0) status = StartPart();
    if (status.ok() && fd_ >= 0) status = FinishPart();
    EXPORTD_RETURN_IF_ERROR(Fail(std::move(status)));
    return part_number_;
  }

  int64_t records() const override { return records_; }
  int64_t bytes_written() const override { return bytes_written_; }

 private:
  static std::string DeflateError(const char* what, int result) {
    return absl::StrCat(what, " failed: ", zError(result));
  }

  // Records `status` as the writer's error when it is one, and returns it.
  [[nodiscard]] absl::Status Fail(absl::Status status) {
    if (!status.ok()) {
      error_ = status;
      AbandonPart();
    }
    return status;
  }

  [[nodiscard]] absl::Status AddRecord(const Row& row) {
    if (fd_ < 0) EXPORTD_RETURN_IF_ERROR(StartPart());
    record_.clear();
    if (csv_) {
      csv::AppendRecord(row, &record_);
    } else {
      jsonl_->AppendRecord(row, &record_);
    }
    EXPORTD_RETURN_IF_ERROR(WriteEncoded(record_));
    ++part_records_;
    ++records_;
    if (part_encoded_bytes_ >= options_.part_size_bytes) return FinishPart();
    return absl::OkStatus();
  }

  // Opens the next part's file and writes the CSV header into part 1.
  [[nodiscard]] absl::Status StartPart() {
    const int32_t number = part_number_ + 1;
    const std::string suffix = absl::StrCat(csv_ ? ".csv" : ".jsonl", gzip_ ? ".gz" : "");
    std::string path = absl::StrFormat("%s/part-%05d-XXXXXX%s", options_.work_dir, number, suffix);
    const int fd = mkostemps(path.data(), static_cast<int>(suffix.size()), O_CLOEXEC);
    if (fd < 0) return IoError("create", path, errno);
    fd_ = fd;
    path_ = std::move(path);
    part_number_ = number;
    part_records_ = 0;
    part_encoded_bytes_ = 0;
    part_file_bytes_ = 0;
    buffered_ = 0;
    if (EVP_DigestInit_ex(sha256_.get(), EVP_sha256(), nullptr) != 1) {
      return absl::InternalError("EVP_DigestInit_ex failed");
    }
    if (gzip_) {
      const int result = deflateReset(&zstream_);
      if (result != Z_OK) return absl::InternalError(DeflateError("deflateReset", result));
    }
    if (csv_ && number == 1) EXPORTD_RETURN_IF_ERROR(WriteEncoded(header_));
    return absl::OkStatus();
  }

  // Adds encoded bytes to the current part, compressing them when asked to.
  [[nodiscard]] absl::Status WriteEncoded(std::string_view data) {
    part_encoded_bytes_ += static_cast<int64_t>(data.size());
    if (gzip_) return Deflate(data, Z_NO_FLUSH);
    while (!data.empty()) {
      const size_t n = std::min(data.size(), kWriteBufferSize - buffered_);
      std::memcpy(buffer_.get() + buffered_, data.data(), n);
      buffered_ += n;
      data.remove_prefix(n);
      if (buffered_ == kWriteBufferSize) EXPORTD_RETURN_IF_ERROR(Flush());
    }
    return absl::OkStatus();
  }

  // Deflates `data` into the write buffer; with Z_FINISH, also ends the gzip member.
  [[nodiscard]] absl::Status Deflate(std::string_view data, int flush) {
    // avail_in is a 32-bit uInt: larger data goes in pieces.
    constexpr size_t kMaxInput = size_t{1} << 30;
    while (data.size() > kMaxInput) {
      EXPORTD_RETURN_IF_ERROR(Deflate(data.substr(0, kMaxInput), Z_NO_FLUSH));
      data.remove_prefix(kMaxInput);
    }
    zstream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zstream_.avail_in = static_cast<uInt>(data.size());
    while (true) {
      zstream_.next_out = reinterpret_cast<Bytef*>(buffer_.get() + buffered_);
      zstream_.avail_out = static_cast<uInt>(kWriteBufferSize - buffered_);
      const int result = deflate(&zstream_, flush);
      if (result != Z_OK && result != Z_STREAM_END && result != Z_BUF_ERROR) {
        return absl::InternalError(DeflateError("deflate", result));
      }
      buffered_ = kWriteBufferSize - zstream_.avail_out;
      if (buffered_ == kWriteBufferSize) EXPORTD_RETURN_IF_ERROR(Flush());
      const bool done = flush == Z_FINISH ? result == Z_STREAM_END : zstream_.avail_in == 0;
      if (done) return absl::OkStatus();
    }
  }

  // Writes the buffer to the part file, hashing what is written.
  [[nodiscard]] absl::Status Flush() {
    if (EVP_DigestUpdate(sha256_.get(), buffer_.get(), buffered_) != 1) {
      return absl::InternalError("EVP_DigestUpdate failed");
    }
    size_t written = 0;
    while (written < buffered_) {
      const ssize_t n = ::write(fd_, buffer_.get() + written, buffered_ - written);
      if (n < 0) {
        if (errno == EINTR) continue;
        return IoError("write", path_, errno);
      }
      written += static_cast<size_t>(n);
    }
    part_file_bytes_ += static_cast<int64_t>(buffered_);
    buffered_ = 0;
    return absl::OkStatus();
  }

  // Completes the current part's file and hands it to on_part.
  [[nodiscard]] absl::Status FinishPart() {
    if (gzip_) EXPORTD_RETURN_IF_ERROR(Deflate({}, Z_FINISH));
    EXPORTD_RETURN_IF_ERROR(Flush());
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_size = 0;
    if (EVP_DigestFinal_ex(sha256_.get(), digest, &digest_size) != 1) {
      return absl::InternalError("EVP_DigestFinal_ex failed");
    }
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) return IoError("close", path_, errno);
    FinishedPart part;
    part.part_number = part_number_;
    part.path = std::exchange(path_, std::string());  // From here on, the file is on_part's.
    part.size_bytes = part_file_bytes_;
    part.record_count = part_records_;
    static constexpr char kHex[] = "0123456789abcdef";
    part.sha256.reserve(2 * digest_size);
    for (unsigned int i = 0; i < digest_size; ++i) {
      part.sha256.push_back(kHex[digest[i] >> 4]);
      part.sha256.push_back(kHex[digest[i] & 0xF]);
    }
    bytes_written_ += part.size_bytes;
    return options_.on_part(part);
  }

  // Closes and removes the file of an unfinished part, if any.
  void AbandonPart() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    if (!path_.empty()) ::unlink(std::exchange(path_, std::string()).c_str());
  }

  const Options options_;
  const bool csv_;                       // Else JSON Lines.
  const bool gzip_;                      // Else no compression.
  std::string header_;                   // CSV: the header record.
  std::optional<jsonl::Encoder> jsonl_;  // JSON Lines: the encoder.
  std::string record_;                   // The record being added, encoded.

  std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter> sha256_;  // Of the current part's file bytes.
  z_stream zstream_{};  // Of the current part, when gzip_. Must not move once initialised.
  bool deflate_initialized_ = false;
  std::unique_ptr<char[]> buffer_;  // kWriteBufferSize bytes, of which buffered_ are pending.
  size_t buffered_ = 0;

  int fd_ = -1;              // The current part's file, or -1 between parts.
  std::string path_;         // The current part's file until it is handed to on_part, else empty.
  int32_t part_number_ = 0;  // The current part, or the last finished one between parts.
  int64_t part_records_ = 0;
  int64_t part_encoded_bytes_ = 0;  // Before compression; decides the split.
  int64_t part_file_bytes_ = 0;     // Written to the file so far.

  int64_t records_ = 0;
  int64_t bytes_written_ = 0;
  bool finished_ = false;
  absl::Status error_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PartWriter>> PartWriter::Create(Options options) {
  if (options.columns.empty()) return absl::InvalidArgumentError("columns: none given");
  if (options.part_size_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("part_size_bytes: must be at least 1, got ", options.part_size_bytes));
  }
  bool csv;
  switch (options.format) {
    case exportjobs::v1::EXPORT_FORMAT_UNSPECIFIED:  // The documented default.
    case exportjobs::v1::EXPORT_FORMAT_CSV:
      csv = true;
      break;
    case exportjobs::v1::EXPORT_FORMAT_JSONL:
      csv = false;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("format: unknown value ", static_cast<int>(options.format)));
  }
  bool gzip;
  switch (options.compression) {
    case exportjobs::v1::COMPRESSION_UNSPECIFIED:  // The documented default.
    case exportjobs::v1::COMPRESSION_NONE:
      gzip = false;
      break;
    case exportjobs::v1::COMPRESSION_GZIP:
      gzip = true;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("compression: unknown value ", static_cast<int>(options.compression)));
  }
  if (options.work_dir.empty()) return absl::InvalidArgumentError("work_dir: empty");
  if (!options.on_part) return absl::InvalidArgumentError("on_part: not set");
  if (!csv) {
    // A JSON object with a key twice is ambiguous to its readers.
    std::set<std::string_view> names;
    for (const Column& column : options.columns) {
      if (!names.insert(column.name).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("columns: \"", column.name, "\" appears twice in a JSON Lines export"));
      }
    }
  }
  auto writer = std::make_unique<PartWriterImpl>(std::move(options), csv, gzip);
  EXPORTD_RETURN_IF_ERROR(writer->Init());
  return writer;
}

}  // namespace exportd
