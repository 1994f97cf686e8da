// exportd-bench: measures a running export-server from the outside, over gRPC.
//
// By default it starts the export-server binary on a fresh temporary data directory and port 0,
// and stops it (SIGTERM) and removes the directory when done: one server for create and
// watch_fanout, and a second fresh one for the worker-side measurements (cycle, upload, export),
// whose claims need a queue without the create measurement's backlog. --server=HOST:PORT
// measures a server that is already running instead. It prints one JSON line per run of a
// measurement to stdout, and after the --runs of a measurement a summary line with the median,
// min and max. --measurements selects them (default all, in this order):
//
//   create        creates with exactly C calls in flight (the callback API, one process), for
//                 each C in --create_concurrency: throughput and latency. Then (lines
//                 "create_coalesced") the client library's path: C creates outstanding through
//                 one ExportClient's CreateAsync, for each C in --create_coalesced_concurrency;
//                 the client coalesces them into BatchCreateExportJobs calls.
//   watch         (lines "watch_fanout") W WatchExportJobs watchers, then creates at
//                 --update_rate per second; the latency from sending a create to each watcher
//                 receiving its event.
//   cycle, upload, export   see bench/worker_measurements.h: job cycles with empty jobs, part
//                 upload MB/s beside a plain write and dd, export throughput beside sqlite3.
//   watch_memory, restart   see bench/server_measurements.h: server memory holding idle
//                 watchers, and restart time to serving with many jobs stored. These start
//                 servers of their own (one per run, and one data directory restarted), so
//                 --server skips them.
//
// Progress and errors go to stderr. Every call has a deadline (--deadline_ms for unary calls;
// streams get one that covers the whole measurement).

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_common.h"
#include "bench/server_measurements.h"
#include "bench/worker_measurements.h"
#include "client/export_client.h"
#include "exportjobs/v1/export_service.grpc.pb.h"
#include "tests/support/server_process.h"

#ifndef EXPORT_SERVER_PATH
#define EXPORT_SERVER_PATH ""
#endif

ABSL_FLAG(std::string, server, "",
          "HOST:PORT of a running export-server to measure; empty starts --server_binary");
ABSL_FLAG(std::string, server_binary, EXPORT_SERVER_PATH,
          "The export-server binary to start when --server is empty");
ABSL_FLAG(bool, server_log, false, "Copy the started server's stderr to this stderr");
ABSL_FLAG(std::string, create_concurrency, "1,64",
          "Comma-separated numbers of create calls kept in flight, one measurement each");
ABSL_FLAG(std::string, create_coalesced_concurrency, "1,64",
          "Comma-separated numbers of creates kept outstanding through the client library's "
          "CreateAsync (coalesced into batch calls), one measurement each; empty: none");
ABSL_FLAG(int, create_coalesced_calls, exportd::client::CoalesceOptions{}.max_calls_in_flight,
          "The client library's create calls in flight before further creates wait for the next "
          "batch (CoalesceOptions::max_calls_in_flight)");
ABSL_FLAG(double, create_seconds, 5, "Measured seconds of each create measurement");
ABSL_FLAG(double, warmup_seconds, 1, "Unmeasured seconds before each create measurement");
ABSL_FLAG(int, watchers, 1000, "WatchExportJobs streams of the fan-out measurement (0 skips it)");
ABSL_FLAG(int, watchers_per_channel, 50,
          "Watch streams per channel (a connection allows ~100 concurrent streams by default)");
ABSL_FLAG(double, update_rate, 10, "Creates per second during the fan-out measurement");
ABSL_FLAG(double, watch_seconds, 10, "Seconds of creates in the fan-out measurement");
ABSL_FLAG(std::string, measurements, "all",
          "Comma-separated measurements to run: create, watch, cycle, upload, export, "
          "watch_memory, restart, or all");
ABSL_FLAG(std::string, scratch_dir, "",
          "With --server: a directory on the file system of the server's data directory for the "
          "reference files and the demo database; empty for a fresh temporary one");
ABSL_FLAG(int, runs, 1, "Runs of each measurement");
ABSL_FLAG(int, deadline_ms, 10000, "Deadline of every unary call, in milliseconds");

namespace exportd::bench {
namespace {

using exportjobs::v1::CreateExportJobRequest;
using exportjobs::v1::EntityType;
using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportJobEvent;
using exportjobs::v1::ExportService;
using exportjobs::v1::WatchExportJobsRequest;

// A small varied create request (all six entity types).
CreateExportJobRequest MakeRequest(int n, const std::string& request_id) {
  CreateExportJobRequest request;
  request.set_entity_type(static_cast<EntityType>(1 + n % 6));
  // Catalog fields: every entity has `id`; all but accounts and campaigns have `account_id`.
  // Campaigns get their default fields.
  const EntityType type = request.entity_type();
  request.add_fields("id");
  if (n % 2 == 0 && type != exportjobs::v1::ENTITY_TYPE_ACCOUNTS) request.add_fields("account_id");
  if (type == exportjobs::v1::ENTITY_TYPE_CAMPAIGNS) request.clear_fields();
  if (n % 3 == 0) {
    (*request.mutable_filters()->mutable_fields())["id"].set_number_value(n);
  }
  request.set_request_id(request_id);
  return request;
}

// ---------------------------------------------------------------------------------------------
// create: C calls always in flight.

struct CreateResult {
  // "create" (unary calls) or "create_coalesced" (the client library).
  std::string bench = "create";
  int in_flight = 0;
  int64_t ops = 0;
  int64_t errors = 0;
  double seconds = 0;
  Latency latency;
  std::string first_error;

  double ops_per_sec() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }

  std::string Json() const {
    return absl::StrFormat(
        R"({"bench":"%s","in_flight":%d,"ops":%d,"seconds":%.3f,"ops_per_sec":%.1f,)"
        R"("p50_us":%.1f,"p99_us":%.1f,"max_us":%.1f,"errors":%d})",
        bench, in_flight, ops, seconds, ops_per_sec(), latency.p50_us, latency.p99_us,
        latency.max_us, errors);
  }
};

// Keeps exactly `in_flight` creates going until stopped: each call's callback starts the next.
// Completions inside the measurement window are counted. Thread-safe; used once.
class CreateLoad {
 public:
  CreateLoad(ExportService::Stub* stub, int in_flight, absl::Duration deadline)
      : stub_(stub), deadline_(deadline), slots_(in_flight) {
    for (int i = 0; i < in_flight; ++i) {
      slots_[i].request = MakeRequest(i, "");
    }
  }

  CreateResult Run(absl::Duration warmup, absl::Duration measure) {
    const int64_t start = NowNanos();
    window_start_ns_ = start + absl::ToInt64Nanoseconds(warmup);
    window_end_ns_ = window_start_ns_ + absl::ToInt64Nanoseconds(measure);
    for (Slot& slot : slots_) StartCall(&slot);
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(warmup + measure));
    stop_ = true;
    {
      std::unique_lock<std::mutex> lock(mu_);
      finished_.wait(lock, [&] { return stopped_slots_ == slots_.size(); });
    }

    CreateResult result;
    result.in_flight = static_cast<int>(slots_.size());
    result.seconds = static_cast<double>(window_end_ns_ - window_start_ns_) / 1e9;
    std::vector<int64_t> latencies;
    for (Slot& slot : slots_) {
      result.ops += static_cast<int64_t>(slot.latencies_ns.size());
      result.errors += slot.errors;
      if (result.first_error.empty()) result.first_error = slot.first_error;
      latencies.insert(latencies.end(), slot.latencies_ns.begin(), slot.latencies_ns.end());
    }
    result.latency = Latency::Of(std::move(latencies));
    return result;
  }

 private:
  // One chain of calls; touched only by the callback of its current call (and by Run once the
  // chain has stopped).
  struct Slot {
    CreateExportJobRequest request;
    std::unique_ptr<grpc::ClientContext> context;
    ExportJob response;
    int64_t started_ns = 0;
    std::vector<int64_t> latencies_ns;
    int64_t errors = 0;
    std::string first_error;
  };

  void StartCall(Slot* slot) {
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->set_deadline(DeadlineAfter(deadline_));
    slot->started_ns = NowNanos();
    stub_->async()->CreateExportJob(slot->context.get(), &slot->request, &slot->response,
                                    [this, slot](grpc::Status status) { OnDone(slot, status); });
  }

  void OnDone(Slot* slot, const grpc::Status& status) {
    const int64_t now = NowNanos();
    if (!status.ok()) {
      ++slot->errors;
      if (slot->first_error.empty()) slot->first_error = StatusText(status);
    } else if (now >= window_start_ns_ && now <= window_end_ns_) {
      slot->latencies_ns.push_back(now - slot->started_ns);
    }
    if (!stop_.load()) {
      StartCall(slot);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++stopped_slots_;
    finished_.notify_all();
  }

  ExportService::Stub* const stub_;
  const absl::Duration deadline_;
  std::vector<Slot> slots_;
  int64_t window_start_ns_ = 0;  // Written before the first call starts.
  int64_t window_end_ns_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable finished_;
  size_t stopped_slots_ = 0;  // Guarded by mu_.
};

// ---------------------------------------------------------------------------------------------
// watch_fanout: W watchers, creates at a fixed rate.

struct FanoutResult {
  int watchers = 0;
  int ready_watchers = 0;   // Watchers that proved live before the updates started.
  int failed_watchers = 0;  // Watch streams that ended before they were cancelled.
  double updates_per_sec = 0;
  int64_t updates = 0;
  int64_t send_errors = 0;
  int64_t deliveries = 0;
  Latency latency;
  std::string first_error;

  int64_t expected_deliveries() const { return updates * watchers; }

  std::string Json() const {
    return absl::StrFormat(
        R"({"bench":"watch_fanout","watchers":%d,"updates_per_sec":%.1f,"updates":%d,)"
        R"("deliveries":%d,"expected_deliveries":%d,"p50_us":%.1f,"p99_us":%.1f,)"
        R"("max_us":%.1f,"ready_watchers":%d,"failed_watchers":%d,"send_errors":%d})",
        watchers, updates_per_sec, updates, deliveries, expected_deliveries(), latency.p50_us,
        latency.p99_us, latency.max_us, ready_watchers, failed_watchers, send_errors);
  }
};

// What the sender and every watcher share.
struct FanoutShared {
  std::string update_prefix;  // request_id prefix of the measured creates; then the sequence.
  // Send time of update i (steady nanoseconds), 0 until sent.
  std::unique_ptr<std::atomic<int64_t>[]> sent_ns;
  int64_t updates = 0;
  std::atomic<int> ready{0};           // Watchers the server has registered.
  std::atomic<int64_t> deliveries{0};  // First receipts of updates, over all watchers.
  std::mutex mu;
  std::condition_variable changed;  // Signalled when a watcher ends or all deliveries.
  int done = 0;                     // Watchers whose stream ended. Guarded by mu.
  int64_t expected = 0;             // Deliveries that end the wait; set before sending.
};

// One WatchExportJobs stream. Its reactions run one at a time; the results are read after
// OnDone, which the shared `done` count publishes.
class FanoutWatcher : public grpc::ClientReadReactor<ExportJobEvent> {
 public:
  explicit FanoutWatcher(FanoutShared* shared)
      : shared_(shared), received_(static_cast<size_t>(shared->updates), false) {}

  void Start(ExportService::Stub* stub, absl::Duration timeout) {
    context_.set_deadline(DeadlineAfter(timeout));
    stub->async()->WatchExportJobs(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }

  void Cancel() { context_.TryCancel(); }

  const std::vector<int64_t>& latencies_ns() const { return latencies_ns_; }
  const grpc::Status& status() const { return status_; }
  bool cancelled() const { return status_.error_code() == grpc::StatusCode::CANCELLED; }

 private:
  void OnReadDone(bool ok) override {
    if (!ok) return;
    const int64_t now = NowNanos();
    const std::string& request_id = event_.job().request_id();
    if (request_id.starts_with(shared_->update_prefix)) {
      int64_t seq;
      if (absl::SimpleAtoi(absl::string_view(request_id).substr(shared_->update_prefix.size()),
                           &seq) &&
          seq >= 0 && seq < shared_->updates && !received_[seq]) {
        received_[seq] = true;
        const int64_t sent = shared_->sent_ns[seq].load(std::memory_order_acquire);
        if (sent > 0) latencies_ns_.push_back(now - sent);
        if (shared_->deliveries.fetch_add(1) + 1 == shared_->expected) {
          std::lock_guard<std::mutex> lock(shared_->mu);
          shared_->changed.notify_all();
        }
      }
    }
    StartRead(&event_);
  }

  // The server sends the headers once the watch is registered.
  void OnReadInitialMetadataDone(bool ok) override {
    if (!ok) return;
    shared_->ready.fetch_add(1);
    std::lock_guard<std::mutex> lock(shared_->mu);
    shared_->changed.notify_all();
  }

  void OnDone(const grpc::Status& status) override {
    status_ = status;
    std::lock_guard<std::mutex> lock(shared_->mu);
    ++shared_->done;
    shared_->changed.notify_all();
  }

  FanoutShared* const shared_;
  grpc::ClientContext context_;
  WatchExportJobsRequest request_;
  ExportJobEvent event_;
  std::vector<bool> received_;
  std::vector<int64_t> latencies_ns_;
  grpc::Status status_;
};

FanoutResult RunFanout(const std::string& address, int run, int watchers, int per_channel,
                       double rate, absl::Duration duration, absl::Duration deadline) {
  FanoutResult result;
  result.watchers = watchers;
  result.updates_per_sec = rate;
  result.updates =
      std::max<int64_t>(1, static_cast<int64_t>(rate * absl::ToDoubleSeconds(duration)));

  // Request ids must be new in every run: a reused one would return the old job, no event.
  const std::string nonce = absl::StrCat(absl::ToUnixMicros(absl::Now()), "-", run);
  FanoutShared shared;
  shared.update_prefix = absl::StrCat("bench-update-", nonce, "-");
  shared.updates = result.updates;
  shared.sent_ns = std::make_unique<std::atomic<int64_t>[]>(result.updates);
  for (int64_t i = 0; i < result.updates; ++i) shared.sent_ns[i] = 0;

  const absl::Duration kReadyTimeout = absl::Seconds(60);
  const absl::Duration kDrainTimeout = absl::Seconds(10) + deadline;
  const absl::Duration watch_deadline = kReadyTimeout + duration + kDrainTimeout + absl::Minutes(1);

  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<ExportService::Stub>> stubs;
  for (int i = 0; i * per_channel < watchers; ++i) {
    channels.push_back(NewChannel(address, 1000 * run + i));
    stubs.push_back(ExportService::NewStub(channels.back()));
  }
  std::vector<std::unique_ptr<FanoutWatcher>> reactors;
  for (int i = 0; i < watchers; ++i) {
    reactors.push_back(std::make_unique<FanoutWatcher>(&shared));
    reactors.back()->Start(stubs[i / per_channel].get(), watch_deadline);
  }

  auto sender_channel = NewChannel(address, 1000 * run + 999);
  auto sender = ExportService::NewStub(sender_channel);
  std::atomic<int64_t> send_errors{0};
  std::atomic<int64_t> sends_outstanding{0};
  std::mutex first_error_mu;
  std::string first_error;
  auto send = [&](const std::string& request_id, int n, std::atomic<int64_t>* sent_ns) {
    struct Call {
      grpc::ClientContext context;
      CreateExportJobRequest request;
      ExportJob response;
    };
    auto* call = new Call;
    call->context.set_deadline(DeadlineAfter(deadline));
    call->request = MakeRequest(n, request_id);
    sends_outstanding.fetch_add(1);
    if (sent_ns != nullptr) sent_ns->store(NowNanos(), std::memory_order_release);
    sender->async()->CreateExportJob(
        &call->context, &call->request, &call->response, [&, call](grpc::Status status) {
          if (!status.ok()) {
            send_errors.fetch_add(1);
            std::lock_guard<std::mutex> lock(first_error_mu);
            if (first_error.empty()) first_error = absl::StrCat("create: ", StatusText(status));
          }
          delete call;
          sends_outstanding.fetch_sub(1);
        });
  };

  // Readiness: every watcher has its response headers (or every stream failed).
  {
    std::unique_lock<std::mutex> lock(shared.mu);
    shared.changed.wait_for(lock, absl::ToChronoSeconds(kReadyTimeout), [&] {
      return shared.ready.load() == watchers || shared.done == watchers;
    });
  }
  result.ready_watchers = shared.ready.load();
  std::cerr << "watch_fanout: " << result.ready_watchers << " of " << watchers
            << " watchers live; sending " << result.updates << " creates at " << rate << "/s\n";

  // The measured updates, paced from one start time.
  shared.expected = result.updates * watchers;
  const SteadyClock::time_point start = SteadyClock::now();
  for (int64_t seq = 0; seq < result.updates; ++seq) {
    std::this_thread::sleep_until(start + std::chrono::nanoseconds(static_cast<int64_t>(
                                              static_cast<double>(seq) * 1e9 / rate)));
    send(absl::StrCat(shared.update_prefix, seq), static_cast<int>(seq), &shared.sent_ns[seq]);
  }
  {
    std::unique_lock<std::mutex> lock(shared.mu);
    shared.changed.wait_for(lock, absl::ToChronoNanoseconds(kDrainTimeout), [&] {
      return shared.deliveries.load() >= shared.expected || shared.done == watchers;
    });
  }

  for (auto& reactor : reactors) reactor->Cancel();
  {
    std::unique_lock<std::mutex> lock(shared.mu);
    shared.changed.wait(lock, [&] { return shared.done == watchers; });
  }
  while (sends_outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));

  std::vector<int64_t> latencies;
  for (const auto& reactor : reactors) {
    latencies.insert(latencies.end(), reactor->latencies_ns().begin(),
                     reactor->latencies_ns().end());
    if (!reactor->cancelled()) {
      ++result.failed_watchers;
      if (result.first_error.empty()) {
        result.first_error = absl::StrCat("watch: ", StatusText(reactor->status()));
      }
    }
  }
  result.deliveries = static_cast<int64_t>(latencies.size());
  result.latency = Latency::Of(std::move(latencies));
  result.send_errors = send_errors.load();
  if (result.first_error.empty()) result.first_error = first_error;
  return result;
}

// ---------------------------------------------------------------------------------------------
// create_coalesced: the same load through the client library. Keeps exactly `in_flight` creates
// outstanding with ExportClient::CreateAsync (each callback starts the next create); the client
// sends them alone or together in BatchCreateExportJobs calls. Each create gets a request_id
// from the client, as Create does. Thread-safe; used once.
class CoalescedCreateLoad {
 public:
  CoalescedCreateLoad(client::ExportClient* client, int in_flight)
      : client_(client), slots_(in_flight) {
    for (int i = 0; i < in_flight; ++i) slots_[i].request = MakeRequest(i, "");
  }

  CreateResult Run(absl::Duration warmup, absl::Duration measure) {
    const int64_t start = NowNanos();
    window_start_ns_ = start + absl::ToInt64Nanoseconds(warmup);
    window_end_ns_ = window_start_ns_ + absl::ToInt64Nanoseconds(measure);
    for (Slot& slot : slots_) Start(&slot);
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(warmup + measure));
    stop_ = true;
    {
      std::unique_lock<std::mutex> lock(mu_);
      finished_.wait(lock, [&] { return stopped_slots_ == slots_.size(); });
    }
    CreateResult result;
    result.bench = "create_coalesced";
    result.in_flight = static_cast<int>(slots_.size());
    result.seconds = static_cast<double>(window_end_ns_ - window_start_ns_) / 1e9;
    std::vector<int64_t> latencies;
    for (Slot& slot : slots_) {
      result.ops += static_cast<int64_t>(slot.latencies_ns.size());
      result.errors += slot.errors;
      if (result.first_error.empty()) result.first_error = slot.first_error;
      latencies.insert(latencies.end(), slot.latencies_ns.begin(), slot.latencies_ns.end());
    }
    result.latency = Latency::Of(std::move(latencies));
    return result;
  }

 private:
  // One chain of creates; touched only by the callback of its current create.
  struct Slot {
    CreateExportJobRequest request;
    int64_t started_ns = 0;
    std::vector<int64_t> latencies_ns;
    int64_t errors = 0;
    std::string first_error;
  };

  void Start(Slot* slot) {
    slot->started_ns = NowNanos();
    client_->CreateAsync(
        slot->request, [this, slot](absl::StatusOr<ExportJob> job) { OnDone(slot, job.status()); });
  }

  void OnDone(Slot* slot, const absl::Status& status) {
    const int64_t now = NowNanos();
    if (!status.ok()) {
      ++slot->errors;
      if (slot->first_error.empty()) slot->first_error = status.ToString();
    } else if (now >= window_start_ns_ && now <= window_end_ns_) {
      slot->latencies_ns.push_back(now - slot->started_ns);
    }
    if (!stop_.load()) {
      Start(slot);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++stopped_slots_;
    finished_.notify_all();
  }

  client::ExportClient* const client_;
  std::vector<Slot> slots_;
  int64_t window_start_ns_ = 0;  // Written before the first create starts.
  int64_t window_end_ns_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable finished_;
  size_t stopped_slots_ = 0;  // Guarded by mu_.
};

// Runs and summaries.

// Each Run* returns 0 when every run succeeded, 1 when some failed, 2 for unusable flags.

// The numbers of a comma-separated flag, or an error naming it.
bool ParseCounts(const char* flag, const std::string& text, std::vector<int>* counts) {
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int value;
    if (!absl::SimpleAtoi(part, &value) || value <= 0) {
      std::cerr << "--" << flag << ": \"" << part << "\" is not a positive number\n";
      return false;
    }
    counts->push_back(value);
  }
  return true;
}

int RunCreate(const std::string& address, int runs, absl::Duration deadline) {
  int failures = 0;
  std::vector<int> concurrencies;
  std::vector<int> coalesced;
  if (!ParseCounts("create_concurrency", absl::GetFlag(FLAGS_create_concurrency), &concurrencies) ||
      !ParseCounts("create_coalesced_concurrency",
                   absl::GetFlag(FLAGS_create_coalesced_concurrency), &coalesced)) {
    return 2;
  }

  auto channel = NewChannel(address, -1);
  auto stub = ExportService::NewStub(channel);
  client::CallOptions call_options;
  call_options.timeout = deadline;
  // A channel of its own, as a process using the library would have.
  client::CoalesceOptions coalesce;
  coalesce.max_calls_in_flight = absl::GetFlag(FLAGS_create_coalesced_calls);
  client::ExportClient library(NewChannel(address, -2), call_options, coalesce);
  // Each run measures every load once, unary and coalesced side by side at each count, so that
  // the loads of one run see a store of about the same size (it grows with every create).
  std::vector<std::pair<std::string, int>> loads;
  for (int in_flight : concurrencies) loads.emplace_back("create", in_flight);
  for (int in_flight : coalesced) loads.emplace_back("create_coalesced", in_flight);
  std::stable_sort(loads.begin(), loads.end(),
                   [](const auto& a, const auto& b) { return a.second < b.second; });
  std::vector<std::vector<CreateResult>> results(loads.size());
  const absl::Duration warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup_seconds));
  const absl::Duration measure = absl::Seconds(absl::GetFlag(FLAGS_create_seconds));
  for (int run = 0; run < runs; ++run) {
    for (size_t i = 0; i < loads.size(); ++i) {
      const auto& [bench, in_flight] = loads[i];
      CreateResult result;
      if (bench == "create") {
        CreateLoad load(stub.get(), in_flight, deadline);
        result = load.Run(warmup, measure);
      } else {
        CoalescedCreateLoad load(&library, in_flight);
        result = load.Run(warmup, measure);
      }
      PrintLine(result.Json());
      if (result.errors > 0) {
        ++failures;
        std::cerr << bench << " at " << in_flight << " in flight: " << result.errors
                  << " errors, first: " << result.first_error << "\n";
      }
      results[i].push_back(std::move(result));
    }
  }
  for (size_t i = 0; i < loads.size(); ++i) {
    const auto& [bench, in_flight] = loads[i];
    PrintLine(absl::StrCat(
        R"({"bench":")", bench, R"(","summary":true,"in_flight":)", in_flight, R"(,"runs":)", runs,
        R"(,"ops_per_sec":)",
        SpreadOf(results[i], [](const CreateResult& r) { return r.ops_per_sec(); }).Json(),
        R"(,"p50_us":)",
        SpreadOf(results[i], [](const CreateResult& r) { return r.latency.p50_us; }).Json(),
        R"(,"p99_us":)",
        SpreadOf(results[i], [](const CreateResult& r) { return r.latency.p99_us; }).Json(),
        R"(,"max_us":)",
        SpreadOf(results[i], [](const CreateResult& r) { return r.latency.max_us; }).Json(), "}"));
  }

  return failures == 0 ? 0 : 1;
}

int RunWatch(const std::string& address, int runs, absl::Duration deadline) {
  int failures = 0;
  const int watchers = absl::GetFlag(FLAGS_watchers);
  if (watchers > 0) {
    const double rate = absl::GetFlag(FLAGS_update_rate);
    if (rate <= 0) {
      std::cerr << "--update_rate must be positive\n";
      return 2;
    }
    std::vector<FanoutResult> results;
    for (int run = 0; run < runs; ++run) {
      FanoutResult result =
          RunFanout(address, run, watchers, std::max(1, absl::GetFlag(FLAGS_watchers_per_channel)),
                    rate, absl::Seconds(absl::GetFlag(FLAGS_watch_seconds)), deadline);
      PrintLine(result.Json());
      if (result.deliveries != result.expected_deliveries() || !result.first_error.empty()) {
        ++failures;
        std::cerr << "watch_fanout: " << result.deliveries << " of " << result.expected_deliveries()
                  << " deliveries" << (result.first_error.empty() ? "" : "; first error: ")
                  << result.first_error << "\n";
      }
      results.push_back(std::move(result));
    }
    PrintLine(absl::StrCat(
        R"({"bench":"watch_fanout","summary":true,"watchers":)", watchers, R"(,"updates_per_sec":)",
        absl::StrFormat("%.1f", rate), R"(,"runs":)", runs, R"(,"delivered_fraction":)",
        SpreadOf(results,
                 [](const FanoutResult& r) {
                   return r.expected_deliveries() > 0
                              ? static_cast<double>(r.deliveries) /
                                    static_cast<double>(r.expected_deliveries())
                              : 0.0;
                 })
            .Json(),
        R"(,"p50_us":)",
        SpreadOf(results, [](const FanoutResult& r) { return r.latency.p50_us; }).Json(),
        R"(,"p99_us":)",
        SpreadOf(results, [](const FanoutResult& r) { return r.latency.p99_us; }).Json(),
        R"(,"max_us":)",
        SpreadOf(results, [](const FanoutResult& r) { return r.latency.max_us; }).Json(), "}"));
  }
  return failures == 0 ? 0 : 1;
}

// The measurements --measurements selects.
struct Selection {
  bool create = false, watch = false, cycle = false, upload = false, export_ = false;
  bool watch_memory = false, restart = false;
  bool all = false;

  bool AnyServerSide() const { return create || watch; }
  bool AnyWorkerSide() const { return cycle || upload || export_; }
  bool AnyOwnServers() const { return watch_memory || restart; }
};

bool ParseSelection(const std::string& flag, Selection* selection) {
  for (absl::string_view name : absl::StrSplit(flag, ',', absl::SkipWhitespace())) {
    if (name == "all") {
      *selection = Selection{true, true, true, true, true, true, true, true};
    } else if (name == "create") {
      selection->create = true;
    } else if (name == "watch" || name == "watch_fanout") {
      selection->watch = true;
    } else if (name == "cycle") {
      selection->cycle = true;
    } else if (name == "upload") {
      selection->upload = true;
    } else if (name == "export") {
      selection->export_ = true;
    } else if (name == "watch_memory") {
      selection->watch_memory = true;
    } else if (name == "restart") {
      selection->restart = true;
    } else {
      std::cerr << "--measurements: unknown measurement \"" << name
                << "\" (create, watch, cycle, upload, export, watch_memory, restart, all)\n";
      return false;
    }
  }
  return selection->AnyServerSide() || selection->AnyWorkerSide() || selection->AnyOwnServers();
}

// Combines exit codes: 2 (could not run) over 1 (some runs failed) over 0.
int Worse(int a, int b) { return std::max(a, b); }

int RunServerSide(const std::string& address, const Selection& selection) {
  const int runs = std::max(1, absl::GetFlag(FLAGS_runs));
  const absl::Duration deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
  int code = 0;
  if (selection.create) code = Worse(code, RunCreate(address, runs, deadline));
  if (selection.watch && absl::GetFlag(FLAGS_watchers) > 0) {
    code = Worse(code, RunWatch(address, runs, deadline));
  }
  return code;
}

int RunWorkerSide(const std::string& address, const std::string& scratch_dir,
                  const Selection& selection) {
  WorkerBenchContext context;
  context.address = address;
  context.scratch_dir = scratch_dir;
  context.runs = std::max(1, absl::GetFlag(FLAGS_runs));
  context.deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
  context.explicitly_selected = !selection.all;
  int code = 0;
  if (selection.cycle) code = Worse(code, RunCycleBench(context));
  if (selection.upload) code = Worse(code, RunUploadBench(context));
  if (selection.export_) code = Worse(code, RunExportBench(context));
  return code;
}

// Starts a server on a fresh data directory, runs `measure` against it, and stops it.
template <typename Measure>
int WithFreshServer(Measure measure) {
  absl::StatusOr<test_support::TempDir> dir = test_support::TempDir::Create("exportd-bench-");
  if (!dir.ok()) {
    std::cerr << "temporary directory: " << dir.status() << "\n";
    return 2;
  }
  test_support::ServerProcess::Options options;
  options.binary = absl::GetFlag(FLAGS_server_binary);
  options.data_dir = dir->path() + "/data";
  options.echo_stderr = absl::GetFlag(FLAGS_server_log);
  options.extra_args = UnlimitedServerArgs();
  if (options.binary.empty()) {
    std::cerr << "no export-server: pass --server=HOST:PORT or --server_binary=PATH\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<test_support::ServerProcess>> server =
      test_support::ServerProcess::Start(options);
  if (!server.ok()) {
    std::cerr << "starting " << options.binary << ": " << server.status() << "\n";
    return 2;
  }
  std::cerr << "started " << options.binary << " at " << (*server)->address() << " on "
            << options.data_dir << "\n";

  int exit_code = measure((*server)->address(), dir->path());

  absl::StatusOr<test_support::ExitStatus> exit = (*server)->Terminate(absl::Seconds(60));
  if (!exit.ok()) {
    std::cerr << "stopping the server: " << exit.status() << "\n";
    return Worse(exit_code, 1);
  }
  if (!exit->success()) {
    std::cerr << "the server ended with " << exit->ToString() << "; stderr:\n"
              << (*server)->StderrTail() << "\n";
    return Worse(exit_code, 1);
  }
  return exit_code;
}

int Main() {
  Selection selection;
  if (!ParseSelection(absl::GetFlag(FLAGS_measurements), &selection)) {
    std::cerr << "--measurements: nothing selected\n";
    return 2;
  }

  const std::string address = absl::GetFlag(FLAGS_server);
  if (!address.empty()) {
    int code = RunServerSide(address, selection);
    if (selection.AnyOwnServers()) {
      std::cerr << "watch_memory and restart start servers of their own: skipped with --server\n";
    }
    if (!selection.AnyWorkerSide()) return code;
    std::optional<test_support::TempDir> scratch;
    std::string scratch_dir = absl::GetFlag(FLAGS_scratch_dir);
    if (scratch_dir.empty()) {
      absl::StatusOr<test_support::TempDir> dir =
          test_support::TempDir::Create("exportd-bench-scratch-");
      if (!dir.ok()) {
        std::cerr << "temporary directory: " << dir.status() << "\n";
        return 2;
      }
      scratch = *std::move(dir);
      scratch_dir = scratch->path();
    }
    return Worse(code, RunWorkerSide(address, scratch_dir, selection));
  }

  int code = 0;
  if (selection.AnyServerSide()) {
    code = Worse(code, WithFreshServer([&](const std::string& server, const std::string&) {
                   return RunServerSide(server, selection);
                 }));
  }
  if (selection.AnyWorkerSide()) {
    code = Worse(code, WithFreshServer([&](const std::string& server, const std::string& dir) {
                   return RunWorkerSide(server, dir, selection);
                 }));
  }
  ServerBenchContext context;
  context.server_binary = absl::GetFlag(FLAGS_server_binary);
  context.server_log = absl::GetFlag(FLAGS_server_log);
  context.runs = std::max(1, absl::GetFlag(FLAGS_runs));
  context.deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
  if (selection.watch_memory) code = Worse(code, RunWatchMemoryBench(context));
  if (selection.restart) code = Worse(code, RunRestartBench(context));
  return code;
}

}  // namespace
}  // namespace exportd::bench

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG, which leaves Mutex's deadlock detector on: a
  // process-wide graph of lock order, updated under a global lock on every acquisition. The
  // tests keep it; the service does not pay for it (docs/performance.md, "watch delivery").
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "Measures export-server: create throughput and latency, watch fan-out latency, job cycle "
      "throughput, part upload MB/s and export throughput, each beside a reference measured in "
      "the same run; server memory holding idle watchers; restart time with many jobs stored.\n"
      "Prints one JSON line per run of a measurement, and a summary line, to stdout.");
  absl::ParseCommandLine(argc, argv);
  return exportd::bench::Main();
}
