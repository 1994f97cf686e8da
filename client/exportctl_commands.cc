#include "client/exportctl_commands.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "client/exportctl_download.h"
#include "client/exportctl_exit.h"
#include "client/exportctl_format.h"
#include "client/exportctl_progress.h"
#include "common/job_json.h"
#include "common/str_cat.h"
#include "nlohmann/json.hpp"

namespace exportd::exportctl {
namespace {

using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportJobEvent;

bool Interrupted(const Runtime& runtime) {
  return runtime.cancel != nullptr && runtime.cancel->cancelled();
}

// Prints the error and returns its exit code. A call cancelled by a signal is an interruption.
int Fail(Runtime& runtime, absl::Status status) {
  if (absl::IsCancelled(status) && Interrupted(runtime)) {
    status = WithExitCode(std::move(status), kExitInterrupted);
  }
  *runtime.err << "exportctl: " << ErrorText(status) << "\n";
  if (absl::IsUnauthenticated(status)) {
    *runtime.err << "exportctl: hint: the server needs a bearer token: pass --token TOKEN, "
                    "--token-file FILE or set EXPORT_TOKEN (see docs/exportctl.md)\n";
  } else if (absl::IsPermissionDenied(status) && ExitCodeOf(status) == kExitGrpcBase + 7) {
    *runtime.err << "exportctl: hint: this token's role may not do that; job commands need a "
                    "client (or admin) token, not a worker's\n";
  }
  *runtime.err << std::flush;
  return ExitCodeOf(status);
}

void PrintJob(const Invocation& inv, Runtime& runtime, const ExportJob& job) {
  if (inv.output == OutputFormat::kJson) {
    *runtime.out << RenderJobJson(job) << "\n";
  } else {
    *runtime.out << RenderJobTable(job);
  }
  runtime.out->flush();
}

// The exit code that tells how a watched job ended.
absl::StatusOr<int> EndCode(const ExportJobEvent& last) {
  if (last.kind() == ExportJobEvent::KIND_DELETED) return kExitJobDeleted;
  switch (last.job().status()) {
    case exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED:
      return kExitOk;
    case exportjobs::v1::EXPORT_JOB_STATUS_FAILED:
      return kExitJobFailed;
    case exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED:
      return kExitJobCancelled;
    default:
      return absl::InternalError(Cat("the watch of job ", last.job().id(), " ended while it was ",
                                     StatusJsonName(last.job().status())));
  }
}

std::string EndSummary(const ExportJobEvent& last) {
  const ExportJob& job = last.job();
  if (last.kind() == ExportJobEvent::KIND_DELETED) return Cat("job ", job.id(), " was deleted");
  switch (job.status()) {
    case exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED:
      return Cat("job ", job.id(), " completed; download it with: exportctl download ", job.id());
    case exportjobs::v1::EXPORT_JOB_STATUS_FAILED:
      return Cat("job ", job.id(), " failed: ", Printable(job.error_message()));
    case exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED:
      return Cat("job ", job.id(), " was cancelled");
    default:
      return Cat("job ", job.id(), " is ", StatusJsonName(job.status()));
  }
}

// Follows job `id` to its end. With `show_progress` (watch, create --wait) every change is
// shown; without (wait) only the final job is printed. Returns the exit code of the end.
int Follow(const Invocation& inv, Runtime& runtime, const std::string& id, bool show_progress) {
  const bool json = inv.output == OutputFormat::kJson;
  const bool live = show_progress && !json && runtime.terminal.stdout_is_tty;
  std::ostream& out = *runtime.out;
  PlainLineFilter plain;
  bool drawn = false;
  std::optional<ExportJobEvent> last;
  client::ExportClient::WatchOptions watch;
  watch.timeout = inv.watch_timeout;
  const absl::Status status = runtime.client->Watch(
      id, watch,
      [&](const ExportJobEvent& event) {
        last = event;
        if (!show_progress) return true;
        if (json) {
          out << RenderJobJson(event.job()) << "\n" << std::flush;
          return true;
        }
        const std::string text = JobProgressText(event.job());
        if (live) {
          out << LiveLine(text, runtime.terminal.width) << std::flush;
          drawn = true;
        } else if (plain.ShouldPrint(text)) {
          out << text << "\n" << std::flush;
        }
        return true;
      },
      runtime.cancel);
  if (drawn) out << "\n" << std::flush;
  if (!status.ok()) return Fail(runtime, status);
  if (!last.has_value()) {
    return Fail(runtime,
                absl::InternalError(Cat("the watch of job ", id, " ended without events")));
  }
  const absl::StatusOr<int> code = EndCode(*last);
  if (!code.ok()) return Fail(runtime, code.status());
  if (!show_progress) {
    PrintJob(inv, runtime, last->job());
  } else if (!json) {
    out << EndSummary(*last) << "\n" << std::flush;
  }
  return *code;
}

int RunCreate(const Invocation& inv, Runtime& runtime) {
  absl::StatusOr<exportjobs::v1::CreateExportJobRequest> request = BuildCreateRequest(inv.create);
  if (!request.ok()) return Fail(runtime, request.status());
  absl::StatusOr<ExportJob> job = runtime.client->Create(*std::move(request), runtime.cancel);
  if (!job.ok()) return Fail(runtime, job.status());
  if (!inv.create.wait) {
    PrintJob(inv, runtime, *job);
    return kExitOk;
  }
  if (inv.output == OutputFormat::kTable) {
    *runtime.out << "created job " << job->id() << "\n" << std::flush;
  }
  return Follow(inv, runtime, job->id(), /*show_progress=*/true);
}

int RunGet(const Invocation& inv, Runtime& runtime) {
  absl::StatusOr<ExportJob> job = runtime.client->Get(inv.id, runtime.cancel);
  if (!job.ok()) return Fail(runtime, job.status());
  PrintJob(inv, runtime, *job);
  return kExitOk;
}

int RunList(const Invocation& inv, Runtime& runtime) {
  exportjobs::v1::ListExportJobsRequest request = BuildListRequest(inv.list);
  std::vector<ExportJob> jobs;
  std::string next_page_token;
  while (true) {
    absl::StatusOr<exportjobs::v1::ListExportJobsResponse> page =
        runtime.client->List(request, runtime.cancel);
    if (!page.ok()) return Fail(runtime, page.status());
    for (ExportJob& job : *page->mutable_jobs()) jobs.push_back(std::move(job));
    next_page_token = page->next_page_token();
    if (!inv.list.all || next_page_token.empty()) break;
    if (next_page_token == request.page_token()) {
      return Fail(runtime, absl::InternalError("the server returned the same page token twice"));
    }
    request.set_page_token(next_page_token);
  }
  if (inv.output == OutputFormat::kJson) {
    *runtime.out << RenderJobListJson(jobs, next_page_token) << "\n";
  } else {
    *runtime.out << RenderJobListTable(jobs);
    if (!next_page_token.empty()) {
      *runtime.out << "more jobs: exportctl list --page-token " << next_page_token
                   << " (with the same filters), or --all\n";
    }
  }
  runtime.out->flush();
  return kExitOk;
}

int RunCancel(const Invocation& inv, Runtime& runtime) {
  absl::StatusOr<ExportJob> job = runtime.client->Cancel(inv.id, runtime.cancel);
  if (!job.ok()) return Fail(runtime, job.status());
  PrintJob(inv, runtime, *job);
  return kExitOk;
}

int RunDelete(const Invocation& inv, Runtime& runtime) {
  if (absl::Status status = runtime.client->Delete(inv.id, runtime.cancel); !status.ok()) {
    return Fail(runtime, status);
  }
  if (inv.output == OutputFormat::kTable) *runtime.out << "deleted job " << inv.id << "\n";
  runtime.out->flush();
  return kExitOk;
}

int RunFields(const Invocation& inv, Runtime& runtime) {
  absl::StatusOr<std::vector<exportjobs::v1::ExportableField>> fields =
      runtime.client->ListFields(inv.fields_entity, runtime.cancel);
  if (!fields.ok()) return Fail(runtime, fields.status());
  if (inv.output == OutputFormat::kJson) {
    *runtime.out << RenderFieldsJson(inv.fields_entity, *fields) << "\n";
  } else {
    *runtime.out << RenderFieldsTable(*fields);
  }
  runtime.out->flush();
  return kExitOk;
}

// Notes on stderr, and on a terminal a live progress line there, redrawn at most every 100 ms.
class ConsoleObserver : public DownloadObserver {
 public:
  ConsoleObserver(Runtime& runtime, std::string name) : runtime_(runtime), name_(std::move(name)) {}

  void Note(std::string_view text) override {
    std::ostream& err = *runtime_.err;
    if (drawn_) err << "\r\x1b[K";
    err << "exportctl: " << Printable(text) << "\n" << std::flush;
    last_draw_ = absl::InfinitePast();
  }

  void Progress(int64_t done, int64_t total) override {
    if (!runtime_.terminal.stderr_is_tty) return;
    const absl::Time now = runtime_.now();
    if (!meter_.has_value()) meter_.emplace(done, now);
    if (done < total && now - last_draw_ < absl::Milliseconds(100)) return;
    last_draw_ = now;
    *runtime_.err << LiveLine(DownloadProgressText(name_, done, total, meter_->Rate(done, now)),
                              runtime_.terminal.width)
                  << std::flush;
    drawn_ = true;
  }

  void Finished() override {
    if (drawn_) *runtime_.err << "\n" << std::flush;
    drawn_ = false;
  }

 private:
  Runtime& runtime_;
  const std::string name_;
  std::optional<TransferMeter> meter_;
  absl::Time last_draw_ = absl::InfinitePast();
  bool drawn_ = false;
};

int RunDownload(const Invocation& inv, Runtime& runtime) {
  absl::StatusOr<ExportJob> job = runtime.client->Get(inv.id, runtime.cancel);
  if (!job.ok()) return Fail(runtime, job.status());
  DownloadRequest request;
  request.part = inv.download.part;
  request.destination =
      inv.download.output.empty() ? DefaultDestination(*job, request.part) : inv.download.output;
  request.force = inv.download.force;
  request.timeout = inv.timeout;
  const GrpcPartFetcher fetch = [&](int part,
                                    const std::function<absl::Status(std::string_view)>& sink) {
    return runtime.client->Download(inv.id, part, inv.transfer_timeout, sink, runtime.cancel);
  };
  ConsoleObserver observer(runtime, request.destination);
  const std::function<bool()> cancelled = [&runtime] { return Interrupted(runtime); };
  absl::StatusOr<DownloadResult> result =
      DownloadFile(*job, request, inv.download.grpc ? &fetch : nullptr, observer, cancelled);
  if (!result.ok()) return Fail(runtime, result.status());
  if (inv.output == OutputFormat::kJson) {
    nlohmann::ordered_json json = nlohmann::ordered_json::object();
    json["path"] = result->path;
    json["job_id"] = job->id();
    json["part"] = request.part;
    json["size_bytes"] = result->size_bytes;
    json["parts_verified"] = result->parts_verified;
    json["resumed_from"] = result->resumed_from;
    json["fetched_bytes"] = result->fetched_bytes;
    json["transport"] = inv.download.grpc ? "grpc" : "http";
    *runtime.out << json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
                 << "\n";
  } else {
    *runtime.out << "wrote " << result->path << ": " << FormatCount(result->size_bytes)
                 << " bytes (" << FormatBytes(result->size_bytes) << "), " << result->parts_verified
                 << (result->parts_verified == 1 ? " part" : " parts") << " verified by SHA-256";
    if (result->resumed_from > 0) *runtime.out << ", resumed at byte " << result->resumed_from;
    *runtime.out << "\n";
  }
  runtime.out->flush();
  return kExitOk;
}

}  // namespace

int RunCommand(const Invocation& inv, Runtime& runtime) {
  switch (inv.command) {
    case Command::kCreate:
      return RunCreate(inv, runtime);
    case Command::kGet:
      return RunGet(inv, runtime);
    case Command::kList:
      return RunList(inv, runtime);
    case Command::kWatch:
      return Follow(inv, runtime, inv.id, /*show_progress=*/true);
    case Command::kWait:
      return Follow(inv, runtime, inv.id, /*show_progress=*/false);
    case Command::kCancel:
      return RunCancel(inv, runtime);
    case Command::kDelete:
      return RunDelete(inv, runtime);
    case Command::kDownload:
      return RunDownload(inv, runtime);
    case Command::kFields:
      return RunFields(inv, runtime);
  }
  return Fail(runtime, absl::InternalError("unknown command"));
}

}  // namespace exportd::exportctl
