#include "server/export_file.h"

#include <openssl/sha.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/proto_time.h"

namespace exportd {
namespace {

using ManifestEntry = exportjobs::v1::ExportPart;

// Hex characters of the SHA-256 kept in an ETag (128 bits).
constexpr size_t kEtagHexLength = 32;

std::string StatusName(ExportJobStatus status) {
  std::string name = exportjobs::v1::ExportJobStatus_Name(status);
  constexpr absl::string_view kPrefix = "EXPORT_JOB_STATUS_";
  if (absl::string_view(name).substr(0, kPrefix.size()) == kPrefix) {
    name.erase(0, kPrefix.size());
  }
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

// A strong validator: the part number and the SHA-256s of the pieces, in order, hashed.
std::string MakeEtag(int32_t part, const std::vector<const ManifestEntry*>& manifest) {
  std::string input = absl::StrCat("exportd-etag-v1\n", part, "\n");
  for (const ManifestEntry* entry : manifest) {
    absl::StrAppend(&input, entry->part_number(), ":", entry->size_bytes(), ":", entry->sha256(),
                    "\n");
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  const std::string hex = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
  return absl::StrCat("\"", hex.substr(0, kEtagHexLength), "\"");
}

}  // namespace

absl::StatusOr<ExportFile> ResolveExportFile(const JobRecord& record, int32_t part,
                                             const BlobStore& blobs, absl::Time now) {
  const ExportJob& job = record.job();
  if (job.status() != exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job.id(), " is ", StatusName(job.status()), ", not completed"));
  }
  if (job.has_expires_at() && now >= FromProtoTime(job.expires_at())) {
    return absl::DeadlineExceededError(absl::StrCat("the export of job ", job.id(), " expired"));
  }

  std::vector<const ManifestEntry*> manifest;
  if (part == 0) {
    for (const ManifestEntry& entry : job.parts()) manifest.push_back(&entry);
  } else {
    for (const ManifestEntry& entry : job.parts()) {
      if (entry.part_number() == part) {
        manifest.push_back(&entry);
        break;
      }
    }
    if (manifest.empty()) {
      return absl::NotFoundError(absl::StrCat("job ", job.id(), " has no part ", part));
    }
  }

  ExportFile file;
  const int64_t epoch = record.lease().epoch();
  for (const ManifestEntry* entry : manifest) {
    absl::StatusOr<std::string> path = blobs.PartPath(job.id(), epoch, entry->part_number());
    if (!path.ok()) return path.status();
    struct stat info;
    if (::stat(path->c_str(), &info) != 0) {
      if (errno == ENOENT) {
        return absl::NotFoundError(
            absl::StrCat("part ", entry->part_number(), " of job ", job.id(), " is not stored"));
      }
      return absl::UnavailableError(absl::StrCat("stat ", *path, ": ", std::strerror(errno)));
    }
    if (static_cast<int64_t>(info.st_size) != entry->size_bytes()) {
      return absl::DataLossError(absl::StrCat("part ", entry->part_number(), " of job ", job.id(),
                                              " holds ", static_cast<int64_t>(info.st_size),
                                              " bytes; its manifest says ", entry->size_bytes()));
    }
    file.pieces.push_back(ExportFile::Piece{std::move(*path), entry->size_bytes()});
    file.size_bytes += entry->size_bytes();
  }

  const bool jsonl = job.format() == exportjobs::v1::EXPORT_FORMAT_JSONL;
  const bool gzip = job.compression() == exportjobs::v1::COMPRESSION_GZIP;
  if (gzip) {
    file.content_type = "application/gzip";
  } else if (jsonl) {
    file.content_type = "application/x-ndjson";
  } else {
    file.content_type = "text/csv; charset=utf-8";
  }
  file.filename = absl::StrCat(job.id(), part == 0 ? "" : absl::StrCat(".part-", part),
                               jsonl ? ".jsonl" : ".csv", gzip ? ".gz" : "");
  file.etag = MakeEtag(part, manifest);
  return file;
}

}  // namespace exportd
