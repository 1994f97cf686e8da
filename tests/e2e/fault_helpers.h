// Helpers of the fault and drain end-to-end tests (fault_test.cc, drain_test.cc): the real
// export-server (tests/support/server_process.h) and export-worker (bench/child_process.h)
// binaries, raw gRPC stubs whose every call has a deadline, polling with a deadline, and the
// checks of a completed job's parts.
#pragma once

#include <openssl/sha.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/child_process.h"
#include "exportjobs/v1/export_service.grpc.pb.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "tests/support/server_process.h"

#ifndef EXPORT_SERVER_PATH
#error "EXPORT_SERVER_PATH must name the export-server binary"
#endif
#ifndef EXPORT_WORKER_PATH
#error "EXPORT_WORKER_PATH must name the export-worker binary"
#endif

namespace exportd::e2e {

using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportService;
using exportjobs::v1::WorkerService;

inline constexpr absl::Duration kCallTimeout = absl::Seconds(10);
inline constexpr absl::Duration kProcessTimeout = absl::Seconds(30);

inline void SetDeadline(grpc::ClientContext& context, absl::Duration timeout = kCallTimeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

inline std::string StatusText(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), " (", status.error_message(), ")");
}

inline bool IsTerminal(exportjobs::v1::ExportJobStatus status) {
  return status == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED ||
         status == exportjobs::v1::EXPORT_JOB_STATUS_FAILED ||
         status == exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED;
}

inline std::string Describe(const ExportJob& job) {
  return absl::StrCat(
      "job ", job.id(), " ", exportjobs::v1::ExportJobStatus_Name(job.status()), " revision ",
      job.revision(), " attempt ", job.attempt(), " progress {", job.progress().ShortDebugString(),
      "} parts ", job.file_parts(),
      job.error_message().empty() ? "" : absl::StrCat(" error '", job.error_message(), "'"));
}

inline std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

inline absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Polls `done` every `period` until it returns true or `timeout` passes; true when it did.
// Waits on an observable condition, not for a time.
inline bool PollUntil(const std::function<bool()>& done, absl::Duration timeout,
                      absl::Duration period = absl::Milliseconds(5)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(period);
  }
  return true;
}

// The files under `dir` (recursively), as paths relative to it, sorted; empty when it is gone.
inline std::vector<std::string> FilesUnder(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code error;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, error);
       !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
    std::error_code ignored;
    // By name, not fs::relative: that resolves links, such as /proc/PID/root.
    if (it->is_regular_file(ignored)) {
      files.push_back(it->path().string().substr(dir.size() + 1));
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The JSON log lines of `log` whose "event" is `event` (and "job_id" is `job_id`, when set).
inline std::vector<nlohmann::json> LogEvents(const std::string& log, const std::string& event,
                                             const std::string& job_id = "") {
  std::vector<nlohmann::json> events;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    nlohmann::json json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!json.is_object() || json.value("event", "") != event) continue;
    if (!job_id.empty() && json.value("job_id", "") != job_id) continue;
    events.push_back(std::move(json));
  }
  return events;
}

// A real export-server and its stubs.
struct Server {
  std::unique_ptr<test_support::ServerProcess> process;
  std::string http_address;
  std::unique_ptr<ExportService::Stub> exports;
  std::unique_ptr<WorkerService::Stub> workers;

  static absl::StatusOr<Server> Start(const std::string& data_dir,
                                      std::vector<std::string> extra_args) {
    test_support::ServerProcess::Options options;
    options.binary = EXPORT_SERVER_PATH;
    options.data_dir = data_dir;
    options.extra_args = std::move(extra_args);
    return Start(options);
  }

  static absl::StatusOr<Server> Start(const test_support::ServerProcess::Options& options) {
    Server server;
    absl::StatusOr<std::unique_ptr<test_support::ServerProcess>> process =
        test_support::ServerProcess::Start(options);
    if (!process.ok()) return process.status();
    server.process = *std::move(process);
    // The server prints "http listening on HOST:PORT" on the line before the gRPC one.
    for (absl::string_view line : absl::StrSplit(server.process->StdoutText(), '\n')) {
      if (absl::ConsumePrefix(&line, "http listening on ")) {
        server.http_address = std::string(line);
      }
    }
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(64 << 20);
    auto channel = grpc::CreateCustomChannel(server.process->address(),
                                             grpc::InsecureChannelCredentials(), args);
    server.exports = ExportService::NewStub(channel);
    server.workers = WorkerService::NewStub(channel);
    return server;
  }

  grpc::Status Create(const exportjobs::v1::CreateExportJobRequest& request, ExportJob* job) {
    grpc::ClientContext context;
    SetDeadline(context);
    return exports->CreateExportJob(&context, request, job);
  }

  grpc::Status Get(const std::string& id, ExportJob* job) {
    grpc::ClientContext context;
    SetDeadline(context);
    exportjobs::v1::GetExportJobRequest request;
    request.set_id(id);
    return exports->GetExportJob(&context, request, job);
  }

  // Polls GetExportJob until `done` holds for the job; the last state read, or an error.
  absl::StatusOr<ExportJob> AwaitJob(const std::string& id,
                                     const std::function<bool(const ExportJob&)>& done,
                                     absl::Duration timeout, const std::string& what) {
    ExportJob job;
    grpc::Status status;
    if (!PollUntil(
            [&] {
              status = Get(id, &job);
              return status.ok() && done(job);
            },
            timeout)) {
      return absl::DeadlineExceededError(
          absl::StrCat("no ", what, " within ", absl::FormatDuration(timeout),
                       "; last: ", status.ok() ? Describe(job) : StatusText(status)));
    }
    return job;
  }

  // DownloadExport of one part: its bytes, or the call's error.
  absl::StatusOr<std::string> DownloadPart(const std::string& id, int part) {
    grpc::ClientContext context;
    SetDeadline(context, absl::Seconds(30));
    exportjobs::v1::DownloadExportRequest request;
    request.set_id(id);
    request.set_part(part);
    auto reader = exports->DownloadExport(&context, request);
    std::string bytes;
    exportjobs::v1::DownloadExportResponse response;
    while (reader->Read(&response)) bytes += response.chunk();
    grpc::Status status = reader->Finish();
    if (!status.ok()) {
      return absl::InternalError(
          absl::StrCat("DownloadExport ", id, " part ", part, ": ", StatusText(status)));
    }
    return bytes;
  }
};

// A real export-worker with its stderr (JSON log lines) in a file.
struct Worker {
  std::unique_ptr<bench::ChildProcess> process;
  std::string stderr_path;

  // Starts `export-worker` against `server_address` and waits for its ready line.
  static absl::StatusOr<Worker> Start(const std::string& dir, const std::string& id,
                                      const std::string& server_address, const std::string& source,
                                      std::vector<std::string> extra_args = {}) {
    Worker worker;
    worker.stderr_path = absl::StrCat(dir, "/", id, ".stderr");
    bench::ChildProcess::Options options;
    options.argv = {EXPORT_WORKER_PATH,
                    absl::StrCat("--server=", server_address),
                    absl::StrCat("--source=", source),
                    absl::StrCat("--worker_id=", id),
                    "--heartbeat_interval=200ms",
                    "--claim_wait=5s",
                    "--rpc_timeout=10s",
                    absl::StrCat("--work_dir=", dir)};
    options.argv.insert(options.argv.end(), extra_args.begin(), extra_args.end());
    options.stderr_path = worker.stderr_path;
    absl::StatusOr<std::unique_ptr<bench::ChildProcess>> process =
        bench::ChildProcess::Start(options);
    if (!process.ok()) return process.status();
    worker.process = *std::move(process);
    if (absl::Status ready = worker.process->WaitForStdoutLine(
            absl::StrCat("export-worker ", id, " ready"), kProcessTimeout);
        !ready.ok()) {
      return absl::Status(ready.code(),
                          absl::StrCat("worker ", id, ": ", ready.message(), "\n", worker.Log()));
    }
    return worker;
  }

  // Everything the worker logged so far.
  std::string Log() const {
    absl::StatusOr<std::string> log = ReadWholeFile(stderr_path);
    return log.ok() ? *log : std::string();
  }
};

// `export-worker seed-demo` into `path`.
inline absl::Status SeedDemo(const std::string& path, int accounts) {
  bench::ChildProcess::Options options;
  options.argv = {EXPORT_WORKER_PATH, "seed-demo", absl::StrCat("--source=", path),
                  absl::StrCat("--accounts=", accounts), "--seed=7"};
  options.stderr_path = path + ".seed.stderr";
  absl::StatusOr<std::unique_ptr<bench::ChildProcess>> seed = bench::ChildProcess::Start(options);
  if (!seed.ok()) return seed.status();
  absl::StatusOr<test_support::ExitStatus> exit = (*seed)->Wait(kProcessTimeout);
  if (!exit.ok()) return exit.status();
  if (!exit->success()) {
    return absl::InternalError(
        absl::StrCat("seed-demo: ", exit->ToString(), "\n", (*seed)->StderrText()));
  }
  return absl::OkStatus();
}

}  // namespace exportd::e2e
