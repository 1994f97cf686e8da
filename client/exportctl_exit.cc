#include "client/exportctl_exit.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"

namespace exportd::exportctl {
namespace {

constexpr absl::string_view kExitCodePayload = "exportctl.exit_code";

}  // namespace

absl::Status WithExitCode(absl::Status status, int exit_code) {
  if (status.ok()) return status;
  status.SetPayload(kExitCodePayload, absl::Cord(absl::StrCat(exit_code)));
  return status;
}

int ExitCodeOf(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  if (absl::optional<absl::Cord> payload = status.GetPayload(kExitCodePayload)) {
    int code = 0;
    if (absl::SimpleAtoi(std::string(*payload), &code)) return code;
  }
  return kExitGrpcBase + static_cast<int>(status.code());
}

absl::Status UsageError(std::string message) {
  return WithExitCode(absl::InvalidArgumentError(std::move(message)), kExitUsage);
}

std::string ErrorText(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

std::string ExitCodeHelp() {
  return "Exit codes:\n"
         "  0        success; watch/wait/create --wait: the job completed\n"
         "  1        the job failed (watch, wait, create --wait)\n"
         "  2        the job was cancelled (watch, wait, create --wait)\n"
         "  3        usage error: bad option or argument, nothing was sent\n"
         "  4        the job was deleted while watched\n"
         "  5        download: size or SHA-256 differs from the parts manifest (no file written)\n"
         "  6        download: local file error (FILE exists without --force, cannot write)\n"
         "  7        download: HTTP error or broken transfer (a partial download is kept)\n"
         "  10+N     gRPC error with status code N: 13 INVALID_ARGUMENT, 14 DEADLINE_EXCEEDED,\n"
         "           15 NOT_FOUND, 16 ALREADY_EXISTS, 19 FAILED_PRECONDITION, 24 UNAVAILABLE, ...\n"
         "  130      interrupted (Ctrl-C or SIGTERM)\n";
}

}  // namespace exportd::exportctl
