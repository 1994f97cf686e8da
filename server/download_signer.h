// DownloadSigner: signed, expiring download URLs for completed exports.
//
//   <public_url>/v1/export-jobs/<job id>/file?tenant=<t>&expires=<unix seconds>&sig=<hex>
//   <public_url>/v1/export-jobs/<job id>/parts/<n>?tenant=<t>&expires=<unix seconds>&sig=<hex>
//
// sig is HMAC-SHA256 under the server's key over the job id, the tenant that owns the job, the
// part (0 for the whole file) and the expiry, so a URL cannot be moved to another job, tenant or
// part or extended. The HTTP port also checks that the job still belongs to the URL's tenant.
// (URLs of the v1 format, without the tenant, no longer verify.)
//
// Thread safety: immutable after creation; all methods are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace exportd {

class DownloadSigner {
 public:
  // `key`: at least 32 bytes of secret. `public_url`: scheme, host and port the URLs start
  // with, without a trailing slash (e.g. "http://127.0.0.1:8080").
  // Errors: INVALID_ARGUMENT for a short key or a public_url that is not http(s)://host[:port].
  static absl::StatusOr<std::unique_ptr<DownloadSigner>> Create(std::string key,
                                                                std::string public_url);

  // The URL of the whole file (part 0) or of one part of a job of `tenant`, valid until
  // `expires`.
  std::string Url(const std::string& job_id, const std::string& tenant, int32_t part,
                  absl::Time expires) const;

  // Checks the `tenant`, `expires` and `sig` query values of a request for (job_id, part).
  // Errors: PERMISSION_DENIED when expires or sig is missing or malformed or the signature does
  // not match (HTTP 403); DEADLINE_EXCEEDED when the URL has expired at `now` (HTTP 410).
  absl::Status Verify(const std::string& job_id, int32_t part, const std::string& tenant,
                      const std::string& expires, const std::string& sig, absl::Time now) const;

 private:
  DownloadSigner(std::string key, std::string public_url);
  std::string Sign(const std::string& job_id, const std::string& tenant, int32_t part,
                   int64_t expires) const;

  const std::string key_;
  const std::string public_url_;
};

// Reads the signing key from `path`; when the file does not exist, creates it (mode 0600) with
// 32 random bytes. Errors: UNAVAILABLE when it cannot be read or created; INVALID_ARGUMENT when
// it holds fewer than 32 bytes.
absl::StatusOr<std::string> LoadOrCreateSigningKey(const std::string& path);

}  // namespace exportd
