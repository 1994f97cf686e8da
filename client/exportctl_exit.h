// exportctl's exit codes, and how an error carries the code it exits with.
//
// Every error exportctl reports is an absl::Status, printed to stderr as
//   exportctl: <CODE NAME>: <message>
// and the process exits with ExitCodeOf(status): the code set by WithExitCode when there is one
// (usage errors, download verification, local files, HTTP, interruption), else 10 + the gRPC
// status code (NOT_FOUND 15, INVALID_ARGUMENT 13, UNAVAILABLE 24, ...). The table is part of
// exportctl's interface: scripts depend on it, so codes are only ever added.
//
// Thread safety: plain functions.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace exportd::exportctl {

// 0: success; for watch, wait and create --wait: the job completed.
inline constexpr int kExitOk = 0;
// watch, wait, create --wait: the job ended FAILED.
inline constexpr int kExitJobFailed = 1;
// watch, wait, create --wait: the job ended CANCELLED.
inline constexpr int kExitJobCancelled = 2;
// The command line is wrong (unknown option, bad value, missing argument); nothing was sent.
inline constexpr int kExitUsage = 3;
// watch, wait, create --wait: the job was deleted while watched.
inline constexpr int kExitJobDeleted = 4;
// download: a part's size or SHA-256 differs from the job's manifest; no file was written.
inline constexpr int kExitVerification = 5;
// download: a local file problem (FILE exists without --force, cannot write, rename, ...).
inline constexpr int kExitLocalFile = 6;
// download: the HTTP download failed (a refused URL: 403, 404, 410; a broken connection). A
// partial download is kept for the next run to resume.
inline constexpr int kExitHttp = 7;
// An error from the server or the gRPC channel: 10 + its gRPC status code.
inline constexpr int kExitGrpcBase = 10;
// Interrupted by SIGINT or SIGTERM (128 + SIGINT).
inline constexpr int kExitInterrupted = 130;

// `status` with `exit_code` attached (as a payload); OK stays OK.
absl::Status WithExitCode(absl::Status status, int exit_code);

// The exit code for `status`: 0 for OK, the attached code, else 10 + its code.
int ExitCodeOf(const absl::Status& status);

// A usage error: INVALID_ARGUMENT that exits with kExitUsage.
absl::Status UsageError(std::string message);

// "<CODE NAME>: <message>", e.g. "NOT_FOUND: job 01 not found".
std::string ErrorText(const absl::Status& status);

// The table of exit codes, for --help and the documentation.
std::string ExitCodeHelp();

}  // namespace exportd::exportctl
