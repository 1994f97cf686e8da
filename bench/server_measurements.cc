#include "bench/server_measurements.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_common.h"
#include "exportjobs/v1/export_service.grpc.pb.h"
#include "tests/support/server_process.h"
#include "tests/support/temp_dir.h"

ABSL_FLAG(int, idle_watchers, 10000,
          "watch_memory: idle WatchExportJob streams whose server memory is measured");
ABSL_FLAG(int, idle_watch_jobs, 100, "watch_memory: pending jobs the idle streams watch");
ABSL_FLAG(int, idle_watchers_per_channel, 50, "watch_memory: streams per connection");
ABSL_FLAG(int64_t, restart_jobs, 1000000, "restart: jobs stored before the restarts");
ABSL_FLAG(int, restart_fill_in_flight, 256,
          "restart: CreateExportJob calls in flight while filling (untimed)");
ABSL_FLAG(int, restart_cancel_percent, 0,
          "restart: percent of the stored jobs cancelled (stored finished); the rest stay pending, "
          "the claim queue the server loads at start");
ABSL_FLAG(std::string, restart_data_dir, "",
          "restart: the data directory to fill and restart on; empty for a fresh temporary one. "
          "A directory filled by an earlier run with the same --restart_jobs and "
          "--restart_cancel_percent is reused without filling");
ABSL_FLAG(absl::Duration, restart_settle, absl::Seconds(5),
          "restart: when VmRSS is read a second time after serving (the background count of the "
          "stored jobs runs meanwhile); 0 skips it");
ABSL_FLAG(absl::Duration, restart_timeout, absl::Minutes(2),
          "restart: longest wait for a server to stop or to serve");

namespace exportd::bench {
namespace {

using exportjobs::v1::CancelExportJobRequest;
using exportjobs::v1::CreateExportJobRequest;
using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportJobEvent;
using exportjobs::v1::ExportService;

constexpr double kMB = 1e6;  // Memory in MB (10^6 bytes), as the targets are stated.

double Seconds(int64_t from_ns, int64_t to_ns) {
  return static_cast<double>(to_ns - from_ns) / 1e9;
}

CreateExportJobRequest PendingJobRequest() {
  CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  request.add_fields("id");
  request.add_fields("name");
  return request;
}

absl::StatusOr<std::unique_ptr<test_support::ServerProcess>> StartServer(
    const ServerBenchContext& context, const std::string& data_dir) {
  test_support::ServerProcess::Options options;
  options.binary = context.server_binary;
  options.data_dir = data_dir;
  options.echo_stderr = context.server_log;
  options.start_timeout = absl::GetFlag(FLAGS_restart_timeout);
  options.extra_args = UnlimitedServerArgs();
  return test_support::ServerProcess::Start(options);
}

// Stops a server; an error names what went wrong.
absl::Status StopServer(test_support::ServerProcess& server, absl::Duration timeout) {
  absl::StatusOr<test_support::ExitStatus> exit = server.Terminate(timeout);
  if (!exit.ok()) return exit.status();
  if (!exit->success()) {
    return absl::InternalError(absl::StrCat("the server ended with ", exit->ToString(),
                                            "; stderr:\n", server.StderrTail()));
  }
  return absl::OkStatus();
}

// grpc.health.v1.Health/Check of the whole server without generated stubs: the request is an
// empty HealthCheckRequest, the answer HealthCheckResponse{status} (field 1, a varint). Returns
// the status (1 SERVING), or -1 with the call's error in *error.
int HealthCheck(grpc::GenericStub* generic, absl::Duration deadline, grpc::Status* error) {
  grpc::ByteBuffer request;
  {
    grpc::Slice slice("");
    request = grpc::ByteBuffer(&slice, 1);
  }
  grpc::ByteBuffer response;
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(deadline));
  context.set_wait_for_ready(true);
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  grpc::Status status;
  generic->UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                     &response, [&](grpc::Status s) {
                       std::lock_guard<std::mutex> lock(mu);
                       status = std::move(s);
                       done = true;
                       done_cv.notify_all();
                     });
  {
    std::unique_lock<std::mutex> lock(mu);
    done_cv.wait(lock, [&] { return done; });
  }
  *error = status;
  if (!status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return -1;
  std::string answer;
  for (const auto& s : slices) answer.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (answer.empty()) return 0;  // UNKNOWN, the default, is sent as no bytes.
  if (answer.size() != 2 || answer[0] != '\x08') return -1;
  return answer[1];
}

// ---------------------------------------------------------------------------------------------
// watch_memory

struct WatchMemoryResult {
  int watchers = 0;
  int jobs = 0;
  int ready = 0;   // Streams that received their first event.
  int failed = 0;  // Streams that ended before they were cancelled.
  int64_t rss_before = 0;
  int64_t rss_after = 0;
  double open_seconds = 0;
  std::string error;

  double delta_mb() const { return static_cast<double>(rss_after - rss_before) / kMB; }
  double kib_per_watcher() const {
    return watchers > 0 ? static_cast<double>(rss_after - rss_before) / 1024.0 / watchers : 0;
  }

  std::string Json() const {
    return absl::StrFormat(
        R"({"bench":"watch_memory","watchers":%d,"jobs":%d,"ready_watchers":%d,)"
        R"("failed_watchers":%d,"rss_before_mb":%.1f,"rss_after_mb":%.1f,"delta_mb":%.1f,)"
        R"("kib_per_watcher":%.2f,"open_seconds":%.3f,"errors":%d})",
        watchers, jobs, ready, failed, static_cast<double>(rss_before) / kMB,
        static_cast<double>(rss_after) / kMB, delta_mb(), kib_per_watcher(), open_seconds,
        error.empty() ? 0 : 1);
  }
};

struct IdleShared {
  std::mutex mu;
  std::condition_variable changed;
  int ready = 0;  // Guarded by mu.
  int done = 0;   // Guarded by mu.
};

// One WatchExportJob stream that reads whatever comes (only the snapshot: nothing changes).
class IdleWatcher : public grpc::ClientReadReactor<ExportJobEvent> {
 public:
  IdleWatcher(IdleShared* shared, const std::string& job_id) : shared_(shared) {
    request_.set_id(job_id);
  }

  void Start(ExportService::Stub* stub, absl::Duration timeout) {
    context_.set_deadline(DeadlineAfter(timeout));
    stub->async()->WatchExportJob(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }

  void Cancel() { context_.TryCancel(); }
  bool cancelled() const { return status_.error_code() == grpc::StatusCode::CANCELLED; }
  const grpc::Status& status() const { return status_; }

 private:
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (!first_) {
      first_ = true;
      std::lock_guard<std::mutex> lock(shared_->mu);
      ++shared_->ready;
      shared_->changed.notify_all();
    }
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    status_ = status;
    std::lock_guard<std::mutex> lock(shared_->mu);
    ++shared_->done;
    shared_->changed.notify_all();
  }

  IdleShared* const shared_;
  grpc::ClientContext context_;
  exportjobs::v1::WatchExportJobRequest request_;
  ExportJobEvent event_;
  bool first_ = false;
  grpc::Status status_;
};

WatchMemoryResult RunWatchMemoryOnce(const ServerBenchContext& context, int run, int watchers,
                                     int jobs, int per_channel) {
  WatchMemoryResult result;
  result.watchers = watchers;
  result.jobs = jobs;
  absl::StatusOr<test_support::TempDir> dir = test_support::TempDir::Create("exportd-bench-");
  if (!dir.ok()) {
    result.error = absl::StrCat("temporary directory: ", dir.status().message());
    return result;
  }
  absl::StatusOr<std::unique_ptr<test_support::ServerProcess>> server =
      StartServer(context, dir->path() + "/data");
  if (!server.ok()) {
    result.error = absl::StrCat("starting the server: ", server.status().message());
    return result;
  }
  const std::string address = (*server)->address();

  // The jobs the streams watch.
  auto channel = NewChannel(address, 5000 + run);
  auto stub = ExportService::NewStub(channel);
  std::vector<std::string> ids;
  for (int i = 0; i < jobs; ++i) {
    grpc::ClientContext call;
    call.set_deadline(DeadlineAfter(context.deadline));
    ExportJob job;
    grpc::Status status = stub->CreateExportJob(&call, PendingJobRequest(), &job);
    if (!status.ok()) {
      result.error = absl::StrCat("CreateExportJob: ", StatusText(status));
      return result;
    }
    ids.push_back(job.id());
  }
  result.rss_before = ResidentBytes((*server)->pid());

  const absl::Duration kOpenTimeout = absl::Minutes(2);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<ExportService::Stub>> stubs;
  for (int i = 0; i * per_channel < watchers; ++i) {
    channels.push_back(NewChannel(address, 100000 * (run + 1) + i));
    stubs.push_back(ExportService::NewStub(channels.back()));
  }
  IdleShared shared;
  std::vector<std::unique_ptr<IdleWatcher>> reactors;
  const int64_t open_start = NowNanos();
  for (int i = 0; i < watchers; ++i) {
    reactors.push_back(std::make_unique<IdleWatcher>(&shared, ids[static_cast<size_t>(i % jobs)]));
    reactors.back()->Start(stubs[static_cast<size_t>(i / per_channel)].get(),
                           kOpenTimeout + absl::Minutes(5));
  }
  {
    std::unique_lock<std::mutex> lock(shared.mu);
    shared.changed.wait_for(lock, absl::ToChronoNanoseconds(kOpenTimeout),
                            [&] { return shared.ready == watchers || shared.done == watchers; });
    result.ready = shared.ready;
  }
  result.open_seconds = Seconds(open_start, NowNanos());
  result.rss_after = ResidentBytes((*server)->pid());

  for (auto& reactor : reactors) reactor->Cancel();
  {
    std::unique_lock<std::mutex> lock(shared.mu);
    shared.changed.wait(lock, [&] { return shared.done == watchers; });
  }
  for (const auto& reactor : reactors) {
    if (!reactor->cancelled()) {
      ++result.failed;
      if (result.error.empty())
        result.error = absl::StrCat("watch: ", StatusText(reactor->status()));
    }
  }
  if (result.ready != watchers && result.error.empty()) {
    result.error = absl::StrCat(result.ready, " of ", watchers, " streams got their snapshot");
  }
  if (result.rss_before < 0 || result.rss_after < 0) {
    result.error = absl::StrCat("cannot read VmRSS of pid ", (*server)->pid());
  }
  if (absl::Status stopped = StopServer(**server, absl::Seconds(60)); !stopped.ok()) {
    if (result.error.empty()) result.error = absl::StrCat("stopping: ", stopped.message());
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// restart

struct RestartResult {
  int64_t jobs = 0;
  double listening_seconds = 0;  // exec to the `grpc listening` line.
  double serving_seconds = 0;    // exec to health SERVING and a first ListExportJobs answer.
  double stop_seconds = 0;       // SIGTERM of the previous server to its exit.
  int64_t rss = 0;               // When serving.
  int64_t rss_settled = 0;       // --restart_settle later (0: not read).
  std::string error;

  std::string Json() const {
    return absl::StrFormat(
        R"({"bench":"restart","jobs":%d,"listening_seconds":%.3f,"serving_seconds":%.3f,)"
        R"("stop_seconds":%.3f,"rss_mb":%.1f,"rss_settled_mb":%.1f,"errors":%d})",
        jobs, listening_seconds, serving_seconds, stop_seconds, static_cast<double>(rss) / kMB,
        static_cast<double>(rss_settled) / kMB, error.empty() ? 0 : 1);
  }
};

// Creates `jobs` jobs with `in_flight` calls in flight (each callback starts the next create),
// cancelling every job whose index is below `cancel_percent` modulo 100.
class Filler {
 public:
  Filler(ExportService::Stub* stub, int64_t jobs, int in_flight, int cancel_percent,
         absl::Duration deadline)
      : stub_(stub),
        jobs_(jobs),
        cancel_percent_(cancel_percent),
        deadline_(deadline),
        slots_(static_cast<size_t>(in_flight)) {}

  // Returns the first error, or OK once every job exists (and the chosen ones are cancelled).
  absl::Status Run() {
    const int64_t start = NowNanos();
    for (Slot& slot : slots_) Next(&slot);
    std::unique_lock<std::mutex> lock(mu_);
    while (stopped_ < slots_.size()) {
      if (!changed_.wait_for(lock, std::chrono::seconds(10),
                             [&] { return stopped_ == slots_.size(); })) {
        const int64_t done = done_.load();
        std::cerr << "restart: filled " << done << " of " << jobs_ << " jobs ("
                  << absl::StrFormat("%.0f", static_cast<double>(done) / Seconds(start, NowNanos()))
                  << "/s)\n";
      }
    }
    return first_error_;
  }

 private:
  struct Slot {
    std::unique_ptr<grpc::ClientContext> context;
    CreateExportJobRequest create;
    CancelExportJobRequest cancel;
    ExportJob job;
    int64_t index = 0;
  };

  void Next(Slot* slot) {
    slot->index = next_.fetch_add(1);
    if (slot->index >= jobs_ || failed_.load()) return Stop();
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->set_deadline(DeadlineAfter(deadline_));
    slot->create = PendingJobRequest();
    stub_->async()->CreateExportJob(slot->context.get(), &slot->create, &slot->job,
                                    [this, slot](grpc::Status status) { OnCreated(slot, status); });
  }

  void OnCreated(Slot* slot, const grpc::Status& status) {
    if (!status.ok()) return Fail("CreateExportJob", status);
    if (slot->index % 100 >= cancel_percent_) {
      done_.fetch_add(1);
      return Next(slot);
    }
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->set_deadline(DeadlineAfter(deadline_));
    slot->cancel.set_id(slot->job.id());
    stub_->async()->CancelExportJob(slot->context.get(), &slot->cancel, &slot->job,
                                    [this, slot](grpc::Status status) {
                                      if (!status.ok()) return Fail("CancelExportJob", status);
                                      done_.fetch_add(1);
                                      Next(slot);
                                    });
  }

  void Fail(const char* what, const grpc::Status& status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (first_error_.ok()) {
        first_error_ = absl::InternalError(absl::StrCat(what, ": ", StatusText(status)));
      }
    }
    failed_ = true;
    Stop();
  }

  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    ++stopped_;
    changed_.notify_all();
  }

  ExportService::Stub* const stub_;
  const int64_t jobs_;
  const int cancel_percent_;
  const absl::Duration deadline_;
  std::vector<Slot> slots_;
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<bool> failed_{false};
  std::mutex mu_;
  std::condition_variable changed_;
  size_t stopped_ = 0;        // Guarded by mu_.
  absl::Status first_error_;  // Guarded by mu_.
};

// Waits until the server at `address` answers health SERVING and a ListExportJobs call.
absl::Status WaitServing(const std::string& address, int index, absl::Duration deadline,
                         absl::Duration timeout) {
  auto channel = NewChannel(address, index);
  grpc::GenericStub generic(channel);
  auto stub = ExportService::NewStub(channel);
  const absl::Time give_up = absl::Now() + timeout;
  grpc::Status error;
  int health = -1;
  // Health is NOT_SERVING until recovery is done; the port already accepts calls then.
  while ((health = HealthCheck(&generic, deadline, &error)) != 1) {
    if (absl::Now() > give_up) {
      return absl::DeadlineExceededError(
          absl::StrCat("health is ", health, " after ", absl::FormatDuration(timeout),
                       error.ok() ? "" : absl::StrCat(": ", StatusText(error))));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // Polling the server's state.
  }
  grpc::ClientContext call;
  call.set_deadline(DeadlineAfter(deadline));
  exportjobs::v1::ListExportJobsRequest request;
  request.set_page_size(1);
  exportjobs::v1::ListExportJobsResponse response;
  grpc::Status status = stub->ListExportJobs(&call, request, &response);
  if (!status.ok())
    return absl::InternalError(absl::StrCat("ListExportJobs: ", StatusText(status)));
  if (response.jobs_size() != 1) {
    return absl::InternalError("ListExportJobs: the restarted server lists no job");
  }
  return absl::OkStatus();
}

// The marker a filled data directory carries: what it was filled with.
std::string FillMarker(int64_t jobs, int cancel_percent) {
  return absl::StrCat("jobs=", jobs, " cancel_percent=", cancel_percent, "\n");
}

}  // namespace

int64_t ResidentBytes(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) != 0) continue;
    absl::string_view rest = absl::StripAsciiWhitespace(absl::string_view(line).substr(6));
    rest = rest.substr(0, rest.find(' '));
    int64_t kib;
    if (absl::SimpleAtoi(rest, &kib)) return kib * 1024;
  }
  return -1;
}

int RunWatchMemoryBench(const ServerBenchContext& context) {
  const int watchers = absl::GetFlag(FLAGS_idle_watchers);
  const int jobs = absl::GetFlag(FLAGS_idle_watch_jobs);
  const int per_channel = absl::GetFlag(FLAGS_idle_watchers_per_channel);
  if (watchers < 1 || jobs < 1 || per_channel < 1) {
    std::cerr << "--idle_watchers, --idle_watch_jobs and --idle_watchers_per_channel must be "
                 "positive\n";
    return 2;
  }
  int failures = 0;
  std::vector<WatchMemoryResult> results;
  for (int run = 0; run < context.runs; ++run) {
    WatchMemoryResult result = RunWatchMemoryOnce(context, run, watchers, jobs, per_channel);
    PrintLine(result.Json());
    if (!result.error.empty()) {
      ++failures;
      std::cerr << "watch_memory: " << result.error << "\n";
    }
    results.push_back(std::move(result));
  }
  PrintLine(absl::StrCat(
      R"({"bench":"watch_memory","summary":true,"watchers":)", watchers, R"(,"runs":)",
      context.runs, R"(,"delta_mb":)",
      SpreadOf(results, [](const WatchMemoryResult& r) { return r.delta_mb(); }).Json(),
      R"(,"rss_after_mb":)",
      SpreadOf(results,
               [](const WatchMemoryResult& r) { return static_cast<double>(r.rss_after) / kMB; })
          .Json(),
      R"(,"kib_per_watcher":)",
      SpreadOf(results, [](const WatchMemoryResult& r) { return r.kib_per_watcher(); }).Json(2),
      R"(,"open_seconds":)",
      SpreadOf(results, [](const WatchMemoryResult& r) { return r.open_seconds; }).Json(3), "}"));
  return failures == 0 ? 0 : 1;
}

int RunRestartBench(const ServerBenchContext& context) {
  const int64_t jobs = absl::GetFlag(FLAGS_restart_jobs);
  const int in_flight = absl::GetFlag(FLAGS_restart_fill_in_flight);
  const int cancel_percent = absl::GetFlag(FLAGS_restart_cancel_percent);
  const absl::Duration timeout = absl::GetFlag(FLAGS_restart_timeout);
  const absl::Duration settle = absl::GetFlag(FLAGS_restart_settle);
  if (jobs < 1 || in_flight < 1 || cancel_percent < 0 || cancel_percent > 100) {
    std::cerr << "--restart_jobs and --restart_fill_in_flight must be positive, "
                 "--restart_cancel_percent between 0 and 100\n";
    return 2;
  }

  std::optional<test_support::TempDir> temp;
  std::string data_dir = absl::GetFlag(FLAGS_restart_data_dir);
  if (data_dir.empty()) {
    absl::StatusOr<test_support::TempDir> dir = test_support::TempDir::Create("exportd-bench-");
    if (!dir.ok()) {
      std::cerr << "temporary directory: " << dir.status() << "\n";
      return 2;
    }
    temp = *std::move(dir);
    data_dir = temp->path() + "/data";
  }
  const std::string marker_path = data_dir + "/exportd-bench-filled";
  const std::string marker = FillMarker(jobs, cancel_percent);
  std::string existing;
  {
    std::ifstream in(marker_path);
    std::getline(in, existing);
    existing += "\n";
  }

  if (existing != marker && !existing.empty() && existing != "\n") {
    existing.pop_back();
    std::cerr << "restart: " << data_dir << " was filled with " << existing
              << "; pass a new or empty --restart_data_dir\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<test_support::ServerProcess>> server =
      StartServer(context, data_dir);
  if (!server.ok()) {
    std::cerr << "restart: starting the server: " << server.status() << "\n";
    return 2;
  }
  if (existing == marker) {
    std::cerr << "restart: " << data_dir << " already holds " << jobs << " jobs\n";
  } else {
    std::cerr << "restart: filling " << data_dir << " with " << jobs << " jobs (" << cancel_percent
              << "% cancelled), " << in_flight << " creates in flight\n";
    auto channel = NewChannel((*server)->address(), 6000);
    auto stub = ExportService::NewStub(channel);
    const int64_t start = NowNanos();
    Filler filler(stub.get(), jobs, in_flight, cancel_percent, context.deadline);
    if (absl::Status filled = filler.Run(); !filled.ok()) {
      std::cerr << "restart: filling: " << filled << "\n";
      return 2;
    }
    std::cerr << "restart: filled in " << absl::StrFormat("%.1f", Seconds(start, NowNanos()))
              << " s\n";
    std::ofstream out(marker_path, std::ios::trunc);
    out << marker;
  }

  int failures = 0;
  std::vector<RestartResult> results;
  for (int run = 0; run < context.runs; ++run) {
    RestartResult result;
    result.jobs = jobs;
    const int64_t stop_start = NowNanos();
    if (absl::Status stopped = StopServer(**server, timeout); !stopped.ok()) {
      std::cerr << "restart: stopping the server: " << stopped << "\n";
      return 1;
    }
    result.stop_seconds = Seconds(stop_start, NowNanos());
    server->reset();

    const int64_t start = NowNanos();
    server = StartServer(context, data_dir);
    if (!server.ok()) {
      std::cerr << "restart: starting the server: " << server.status() << "\n";
      return 2;
    }
    result.listening_seconds = Seconds(start, NowNanos());
    absl::Status serving = WaitServing((*server)->address(), 7000 + run, context.deadline, timeout);
    result.serving_seconds = Seconds(start, NowNanos());
    result.rss = ResidentBytes((*server)->pid());
    if (!serving.ok()) result.error = std::string(serving.message());
    if (settle > absl::ZeroDuration()) {
      std::this_thread::sleep_for(absl::ToChronoNanoseconds(settle));  // A later sample.
      result.rss_settled = ResidentBytes((*server)->pid());
    }
    PrintLine(result.Json());
    if (!result.error.empty()) {
      ++failures;
      std::cerr << "restart: " << result.error << "\n";
    }
    results.push_back(std::move(result));
  }
  if (absl::Status stopped = StopServer(**server, timeout); !stopped.ok()) {
    ++failures;
    std::cerr << "restart: stopping the server: " << stopped << "\n";
  }
  PrintLine(absl::StrCat(
      R"({"bench":"restart","summary":true,"jobs":)", jobs, R"(,"cancel_percent":)", cancel_percent,
      R"(,"runs":)", context.runs, R"(,"serving_seconds":)",
      SpreadOf(results, [](const RestartResult& r) { return r.serving_seconds; }).Json(3),
      R"(,"listening_seconds":)",
      SpreadOf(results, [](const RestartResult& r) { return r.listening_seconds; }).Json(3),
      R"(,"rss_mb":)",
      SpreadOf(results, [](const RestartResult& r) { return static_cast<double>(r.rss) / kMB; })
          .Json(),
      R"(,"rss_settled_mb":)",
      SpreadOf(results,
               [](const RestartResult& r) { return static_cast<double>(r.rss_settled) / kMB; })
          .Json(),
      R"(,"stop_seconds":)",
      SpreadOf(results, [](const RestartResult& r) { return r.stop_seconds; }).Json(3), "}"));
  return failures == 0 ? 0 : 1;
}

}  // namespace exportd::bench
