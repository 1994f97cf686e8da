// Fuzzes download URL verification (server/download_signer.h).
//
// A signer with a fixed key signs a few URLs at start-up (for two jobs, the whole file and
// parts, one URL still valid and one expired). Each input is then used twice:
//
//  1. As a request target ("/v1/export-jobs/<id>/file?expires=..&sig=..", optionally after
//     the public URL), read the way the HTTP server reads it: cpp-httplib's own percent
//     decoding and query parsing, then the server's path grammar, then Verify.
//     Invariants: Verify answers OK, PERMISSION_DENIED or DEADLINE_EXCEEDED only; OK and
//     DEADLINE_EXCEEDED only for a (job id, part, expiry) that was signed, with exactly that
//     signature, and OK only before the expiry; and every signed URL itself is accepted.
//     The seed corpus holds the signed URLs, so the fuzzer mutates real ones.
//
//  2. As (job id, part, expiry) for a new URL from Url(): the URL parses back to the same
//     job id and part, verifies before its expiry and is DEADLINE_EXCEEDED after it, and
//     its signature is refused for any other job id, tenant, part or expiry.
//
// Every URL is signed for the tenant kTenant (the tenant query value).
#include <fuzzer/FuzzedDataProvider.h>
#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/download_signer.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using exportd::DownloadSigner;

constexpr std::string_view kPublicUrl = "http://127.0.0.1:8080";
constexpr std::string_view kJobsPrefix = "/v1/export-jobs/";
const absl::Time kNow = absl::FromUnixSeconds(1700000000);  // 2023-11-14
const std::string kTenant = "acme";

struct Signed {
  std::string job_id;
  int32_t part;
  int64_t expires;
  std::string sig;
  std::string url;
};

const DownloadSigner* g_signer = nullptr;
std::vector<Signed>* g_signed = nullptr;

// What the server reads from a request target: the percent-decoded path split into job id
// and part (0 = file; -1 = not a positive int32, which the server answers 404 without
// verifying), and the first tenant, expires and sig query values.
struct Target {
  std::string job_id;
  int32_t part = 0;
  std::string tenant;
  std::string expires;
  std::string sig;
};

// The grammar of the server's download paths (server/http_server.cc).
std::optional<Target> ParseTarget(std::string_view text) {
  if (text.substr(0, kPublicUrl.size()) == kPublicUrl) text.remove_prefix(kPublicUrl.size());
  const size_t question = text.find('?');
  const std::string path =
      httplib::detail::decode_url(std::string(text.substr(0, question)), false);
  httplib::Request request;
  if (question != std::string_view::npos) {
    httplib::detail::parse_query_text(std::string(text.substr(question + 1)), request.params);
  }
  std::string_view rest = path;
  if (rest.substr(0, kJobsPrefix.size()) != kJobsPrefix) return std::nullopt;
  rest.remove_prefix(kJobsPrefix.size());
  const size_t slash = rest.find('/');
  if (slash == 0 || slash == std::string_view::npos) return std::nullopt;
  Target target;
  target.job_id = std::string(rest.substr(0, slash));
  rest.remove_prefix(slash + 1);
  if (rest != "file") {
    constexpr std::string_view kParts = "parts/";
    if (rest.substr(0, kParts.size()) != kParts) return std::nullopt;
    const std::string_view number = rest.substr(kParts.size());
    if (number.empty() || number.find('/') != std::string_view::npos) return std::nullopt;
    int32_t part = 0;
    const bool digits = number.find_first_not_of("0123456789") == std::string_view::npos;
    if (!digits || !absl::SimpleAtoi(absl::string_view(number.data(), number.size()), &part) ||
        part < 1) {
      part = -1;
    }
    target.part = part;
  }
  target.tenant = request.get_param_value("tenant");
  target.expires = request.get_param_value("expires");
  target.sig = request.get_param_value("sig");
  return target;
}

// The signed entry that (job id, part, expires, sig) names, or nullptr.
const Signed* FindSigned(const Target& target) {
  int64_t expires = 0;
  if (target.expires.empty() ||
      target.expires.find_first_not_of("0123456789") != std::string::npos ||
      !absl::SimpleAtoi(target.expires, &expires)) {
    return nullptr;
  }
  for (const Signed& entry : *g_signed) {
    if (entry.job_id == target.job_id && entry.part == target.part && entry.expires == expires &&
        entry.sig == target.sig && target.tenant == kTenant) {
      return &entry;
    }
  }
  return nullptr;
}

void CheckVerdict(const Target& target, const absl::Status& verdict, std::string_view input) {
  const absl::StatusCode code = verdict.code();
  FUZZ_CHECK(code == absl::StatusCode::kOk || code == absl::StatusCode::kPermissionDenied ||
                 code == absl::StatusCode::kDeadlineExceeded,
             "unexpected status", verdict.ToString());
  const Signed* entry = FindSigned(target);
  if (entry == nullptr) {
    FUZZ_CHECK(code == absl::StatusCode::kPermissionDenied, "accepted an unsigned URL", input);
    return;
  }
  const bool expired = kNow >= absl::FromUnixSeconds(entry->expires);
  FUZZ_CHECK(code == (expired ? absl::StatusCode::kDeadlineExceeded : absl::StatusCode::kOk),
             "refused a signed URL", input);
}

void CheckRequestTarget(std::string_view input) {
  const std::optional<Target> target = ParseTarget(input);
  if (!target.has_value() || target->part < 0) return;
  const absl::Status verdict = g_signer->Verify(target->job_id, target->part, target->tenant,
                                                target->expires, target->sig, kNow);
  CheckVerdict(*target, verdict, input);
}

void CheckRoundTrip(const uint8_t* data, size_t size) {
  FuzzedDataProvider provider(data, size);
  const int32_t part = provider.ConsumeIntegralInRange<int32_t>(0, INT32_MAX);
  const int64_t expires = provider.ConsumeIntegralInRange<int64_t>(1, int64_t{1} << 40);
  const std::string job_id = provider.ConsumeRemainingBytesAsString();
  // The server decodes the whole path before splitting it, so a job id with '/' has no
  // download path; job ids are hex.
  if (job_id.empty() || job_id.find('/') != std::string::npos) return;

  const std::string url = g_signer->Url(job_id, kTenant, part, absl::FromUnixSeconds(expires));
  FUZZ_CHECK(url.substr(0, kPublicUrl.size()) == kPublicUrl, "url", url);
  const std::optional<Target> target = ParseTarget(url);
  FUZZ_CHECK(target.has_value(), "Url() does not parse back", url);
  FUZZ_CHECK(target->job_id == job_id && target->part == part, "Url() names another target", url);
  FUZZ_CHECK(target->expires == absl::StrCat(expires), "expires", url);
  FUZZ_CHECK(target->tenant == kTenant, "tenant", url);

  const absl::Time at = absl::FromUnixSeconds(expires);
  const auto verify = [&](const std::string& id, int32_t p, const std::string& e, absl::Time now) {
    return g_signer->Verify(id, p, kTenant, e, target->sig, now).code();
  };
  FUZZ_CHECK(verify(job_id, part, target->expires, at - absl::Seconds(1)) == absl::StatusCode::kOk,
             "a fresh URL is refused", url);
  FUZZ_CHECK(verify(job_id, part, target->expires, at) == absl::StatusCode::kDeadlineExceeded,
             "an expired URL is not expired", url);
  const absl::StatusCode denied = absl::StatusCode::kPermissionDenied;
  FUZZ_CHECK(verify(job_id + "0", part, target->expires, at - absl::Seconds(1)) == denied,
             "moved to another job", url);
  FUZZ_CHECK(verify(job_id.substr(0, job_id.size() - 1), part, target->expires,
                    at - absl::Seconds(1)) == denied,
             "moved to another job", url);
  FUZZ_CHECK(
      verify(job_id, part == 0 ? 1 : part - 1, target->expires, at - absl::Seconds(1)) == denied,
      "moved to another part", url);
  FUZZ_CHECK(verify(job_id, part, absl::StrCat(expires + 1), at - absl::Seconds(1)) == denied,
             "extended", url);
  FUZZ_CHECK(g_signer->Verify(job_id, part, kTenant + "x", target->expires, target->sig,
                              at - absl::Seconds(1))
                     .code() == denied,
             "moved to another tenant", url);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  absl::StatusOr<std::unique_ptr<DownloadSigner>> signer =
      DownloadSigner::Create(std::string(32, 'k') + "exportd-fuzz", std::string(kPublicUrl));
  if (!signer.ok()) std::abort();
  g_signer = signer->release();
  g_signed = new std::vector<Signed>;
  const int64_t valid = 1900000000;    // 2030: after kNow
  const int64_t expired = 1600000000;  // 2020: before kNow
  for (const std::string job_id : {"018f2a6b3c4d5e6f0a1b2c3d", "018f2a6b3c4d5e6f0a1b2c3e"}) {
    for (int32_t part : {0, 1, 2, 10}) {
      for (int64_t expires : {valid, expired}) {
        const std::string url =
            g_signer->Url(job_id, kTenant, part, absl::FromUnixSeconds(expires));
        const std::optional<Target> target = ParseTarget(url);
        if (!target.has_value()) std::abort();
        g_signed->push_back({job_id, part, expires, target->sig, url});
      }
    }
  }
  // Every signed URL is accepted (or, once expired, reported expired).
  for (const Signed& entry : *g_signed) CheckRequestTarget(entry.url);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  CheckRequestTarget(std::string_view(reinterpret_cast<const char*>(data), size));
  CheckRoundTrip(data, size);
  return 0;
}
