#include "client/exportctl_verify.h"

#include <algorithm>

#include "common/str_cat.h"

namespace exportd::exportctl {
namespace {

std::string Hex(const unsigned char* bytes, unsigned int size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (unsigned int i = 0; i < size; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 0xF]);
  }
  return out;
}

bool IsSha256Hex(std::string_view text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string Range(const PartSpan& span) {
  return span.size == 0 ? "no bytes" : Cat("bytes ", span.offset, "-", span.offset + span.size - 1);
}

void InitSha256(EVP_MD_CTX* context) { EVP_DigestInit_ex(context, EVP_sha256(), nullptr); }

}  // namespace

absl::StatusOr<std::vector<PartSpan>> PartsToFetch(const exportjobs::v1::ExportJob& job, int part) {
  if (job.status() != exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) {
    return absl::FailedPreconditionError(Cat("job ", job.id(), " is ",
                                             exportjobs::v1::ExportJobStatus_Name(job.status()),
                                             "; only a completed job can be downloaded"));
  }
  if (part < 0 || part > job.parts_size()) {
    return absl::InvalidArgumentError(Cat("--part: job ", job.id(), " has ", job.parts_size(),
                                          job.parts_size() == 1 ? " part" : " parts", ", not ",
                                          part));
  }
  std::vector<PartSpan> spans;
  int64_t offset = 0;
  for (int i = 0; i < job.parts_size(); ++i) {
    const exportjobs::v1::ExportPart& manifest = job.parts(i);
    if (manifest.part_number() != i + 1) {
      return absl::DataLossError(Cat("the parts manifest of job ", job.id(), " lists part ",
                                     manifest.part_number(), " in place ", i + 1));
    }
    if (manifest.size_bytes() < 0 || !IsSha256Hex(manifest.sha256())) {
      return absl::DataLossError(Cat("the parts manifest of job ", job.id(), ": part ", i + 1,
                                     " has size ", manifest.size_bytes(), " and SHA-256 \"",
                                     manifest.sha256(), "\""));
    }
    PartSpan span{manifest.part_number(), offset, manifest.size_bytes(), manifest.sha256(),
                  manifest.download_url()};
    offset += manifest.size_bytes();
    if (part == 0) {
      spans.push_back(std::move(span));
    } else if (part == i + 1) {
      span.offset = 0;
      spans.push_back(std::move(span));
    }
  }
  if (offset != job.file_size_bytes()) {
    return absl::DataLossError(Cat("the parts of job ", job.id(), " add up to ", offset,
                                   " bytes, the job says ", job.file_size_bytes()));
  }
  return spans;
}

int64_t SpansSize(const std::vector<PartSpan>& spans) {
  return spans.empty() ? 0 : spans.back().offset + spans.back().size;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr);
  return Hex(digest, size);
}

PartVerifier::PartVerifier(std::vector<PartSpan> spans)
    : spans_(std::move(spans)),
      total_(SpansSize(spans_)),
      context_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
  InitSha256(context_.get());
}

PartVerifier::~PartVerifier() = default;

void PartVerifier::Reset() {
  current_ = 0;
  position_ = 0;
  error_ = absl::OkStatus();
  InitSha256(context_.get());
}

void PartVerifier::RewindToVerifiedEnd() {
  position_ = verified_end();
  InitSha256(context_.get());
}

int64_t PartVerifier::verified_end() const {
  return current_ < spans_.size() ? spans_[current_].offset : total_;
}

absl::Status PartVerifier::FinishPart() {
  const PartSpan& span = spans_[current_];
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(context_.get(), digest, &size);
  const std::string actual = Hex(digest, size);
  if (actual != span.sha256) {
    error_ = absl::DataLossError(Cat("part ", span.number, " (", Range(span), "): SHA-256 is ",
                                     actual, ", the manifest says ", span.sha256));
    return error_;
  }
  ++current_;
  InitSha256(context_.get());
  return absl::OkStatus();
}

absl::Status PartVerifier::Update(std::string_view bytes) {
  if (!error_.ok()) return error_;
  while (true) {
    // Parts of no bytes complete without any.
    while (current_ < spans_.size() &&
           position_ == spans_[current_].offset + spans_[current_].size) {
      if (absl::Status status = FinishPart(); !status.ok()) return status;
    }
    if (bytes.empty()) return absl::OkStatus();
    if (current_ == spans_.size()) {
      error_ = absl::DataLossError(Cat("more bytes than the manifest's ", total_));
      return error_;
    }
    const PartSpan& span = spans_[current_];
    const size_t take = static_cast<size_t>(
        std::min<int64_t>(static_cast<int64_t>(bytes.size()), span.offset + span.size - position_));
    EVP_DigestUpdate(context_.get(), bytes.data(), take);
    position_ += static_cast<int64_t>(take);
    bytes.remove_prefix(take);
  }
}

absl::Status PartVerifier::Finish() {
  if (absl::Status status = Update({}); !status.ok()) return status;
  if (position_ != total_) {
    const PartSpan& span = spans_[current_];
    error_ = absl::DataLossError(
        Cat("part ", span.number, " (", Range(span), ") ends after ", position_ - span.offset,
            " of its ", span.size, " bytes: the download is ", total_ - position_, " bytes short"));
    return error_;
  }
  return absl::OkStatus();
}

}  // namespace exportd::exportctl
