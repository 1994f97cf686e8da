#include "server/metrics.h"

#include <array>
#include <atomic>
#include <chrono>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/job_json.h"
#include "common/logging.h"
#include "exportjobs/v1/export_service.pb.h"
#include "exportjobs/v1/worker_service.pb.h"
#include "grpcpp/support/interceptor.h"
#include "prometheus/counter.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "server/grpc_status.h"
#include "server/job_events.h"

namespace exportd {
namespace {

using prometheus::Counter;
using prometheus::Histogram;

constexpr size_t kEntityTypes = exportjobs::v1::EntityType_ARRAYSIZE;
constexpr size_t kStatusCodes = 17;  // grpc::StatusCode OK .. UNAUTHENTICATED

const char* CodeName(int code) {
  static constexpr const char* kNames[kStatusCodes] = {"OK",
                                                       "CANCELLED",
                                                       "UNKNOWN",
                                                       "INVALID_ARGUMENT",
                                                       "DEADLINE_EXCEEDED",
                                                       "NOT_FOUND",
                                                       "ALREADY_EXISTS",
                                                       "PERMISSION_DENIED",
                                                       "RESOURCE_EXHAUSTED",
                                                       "FAILED_PRECONDITION",
                                                       "ABORTED",
                                                       "OUT_OF_RANGE",
                                                       "UNIMPLEMENTED",
                                                       "INTERNAL",
                                                       "UNAVAILABLE",
                                                       "DATA_LOSS",
                                                       "UNAUTHENTICATED"};
  return code >= 0 && static_cast<size_t>(code) < kStatusCodes ? kNames[code] : "UNKNOWN";
}

// One counter per entity type (index 0, UNSPECIFIED, is unused).
struct PerEntity {
  std::array<Counter*, kEntityTypes> counters{};

  void Register(prometheus::Family<Counter>& family) {
    for (size_t type = 1; type < kEntityTypes; ++type) {
      const std::string_view name = EntityTypeJsonName(static_cast<EntityType>(type));
      if (name.empty()) continue;
      counters[type] = &family.Add({{"entity_type", std::string(name)}});
    }
  }

  void Increment(EntityType type) {
    const size_t index = static_cast<size_t>(type);
    if (index < counters.size() && counters[index] != nullptr) counters[index]->Increment();
  }
};

// The metrics of one gRPC method.
struct MethodMetrics {
  std::string service;
  std::string method;
  Histogram* latency = nullptr;
  prometheus::Family<Counter>* handled_family = nullptr;
  // handled_total by code, added on first use (Family::Add is thread-safe and idempotent).
  mutable std::array<std::atomic<Counter*>, kStatusCodes> handled{};

  void Handled(int code) const {
    const size_t index =
        code >= 0 && static_cast<size_t>(code) < kStatusCodes ? static_cast<size_t>(code) : 2;
    Counter* counter = handled[index].load(std::memory_order_acquire);
    if (counter == nullptr) {
      counter = &handled_family->Add(
          {{"service", service}, {"method", method}, {"code", CodeName(static_cast<int>(index))}});
      handled[index].store(counter, std::memory_order_release);
    }
    counter->Increment();
  }
};

prometheus::MetricFamily GaugeFamily(std::string name, std::string help) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  return family;
}

void AddGauge(prometheus::MetricFamily& family, double value,
              std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  family.metric.push_back(std::move(metric));
}

}  // namespace

class ServerMetrics::Impl {
 public:
  explicit Impl(Sources sources) : sources_(std::move(sources)) {
    prometheus::Registry& r = *registry_;
    created_.Register(prometheus::BuildCounter()
                          .Name("exportd_jobs_created_total")
                          .Help("Jobs created.")
                          .Register(r));
    claims_.Register(prometheus::BuildCounter()
                         .Name("exportd_job_claims_total")
                         .Help("Jobs claimed by a worker (each attempt counts).")
                         .Register(r));
    completed_.Register(prometheus::BuildCounter()
                            .Name("exportd_jobs_completed_total")
                            .Help("Jobs completed.")
                            .Register(r));
    failed_.Register(prometheus::BuildCounter()
                         .Name("exportd_jobs_failed_total")
                         .Help("Jobs failed for good (not retried).")
                         .Register(r));
    cancelled_.Register(prometheus::BuildCounter()
                            .Name("exportd_jobs_cancelled_total")
                            .Help("Jobs cancelled.")
                            .Register(r));
    retries_.Register(
        prometheus::BuildCounter()
            .Name("exportd_job_retries_total")
            .Help("Attempts that ended in a retry (a retryable failure or a lease expiry).")
            .Register(r));
    lease_expiries_.Register(prometheus::BuildCounter()
                                 .Name("exportd_job_lease_expiries_total")
                                 .Help("Leases that expired before the worker finished the job.")
                                 .Register(r));
    releases_.Register(prometheus::BuildCounter()
                           .Name("exportd_job_releases_total")
                           .Help("Jobs a worker gave back unfinished (pending again at once).")
                           .Register(r));
    auto& deleted = prometheus::BuildCounter()
                        .Name("exportd_jobs_deleted_total")
                        .Help("Jobs deleted, by request or by the janitor after their retention.")
                        .Register(r);
    deleted_by_request_ = &deleted.Add({{"reason", "request"}});
    deleted_by_janitor_ = &deleted.Add({{"reason", "retention"}});
    files_expired_ = &prometheus::BuildCounter()
                          .Name("exportd_export_files_expired_total")
                          .Help("Completed exports whose files the janitor removed at expiry.")
                          .Register(r)
                          .Add({});
    parts_uploaded_ = &prometheus::BuildCounter()
                           .Name("exportd_parts_uploaded_total")
                           .Help("Parts uploaded and recorded.")
                           .Register(r)
                           .Add({});
    upload_bytes_ = &prometheus::BuildCounter()
                         .Name("exportd_upload_bytes_total")
                         .Help("Part bytes written by uploads (including uploads that failed).")
                         .Register(r)
                         .Add({});
    auto& janitor = prometheus::BuildCounter()
                        .Name("exportd_janitor_runs_total")
                        .Help("Janitor runs, by result.")
                        .Register(r);
    janitor_ok_ = &janitor.Add({{"result", "ok"}});
    janitor_error_ = &janitor.Add({{"result", "error"}});
    group_requests_ =
        &prometheus::BuildHistogram()
             .Name("exportd_commit_group_requests")
             .Help("Requests applied per group commit (one synced write).")
             .Register(r)
             .Add({}, Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512});
    write_seconds_ =
        &prometheus::BuildHistogram()
             .Name("exportd_commit_write_seconds")
             .Help("Time of the synced write of one group commit.")
             .Register(r)
             .Add({}, Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                  0.01, 0.025, 0.05, 0.1, 0.25, 1});

    auto& handled = prometheus::BuildCounter()
                        .Name("exportd_grpc_server_handled_total")
                        .Help("gRPC calls of ExportService and WorkerService finished, by code.")
                        .Register(r);
    auto& handling =
        prometheus::BuildHistogram()
            .Name("exportd_grpc_server_handling_seconds")
            .Help(
                "Duration of gRPC calls of ExportService and WorkerService, from arrival to "
                "status (of streams: their lifetime).")
            .Register(r);
    const Histogram::BucketBoundaries rpc_buckets = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    for (const google::protobuf::ServiceDescriptor* service :
         {exportjobs::v1::CreateExportJobRequest::descriptor()->file()->FindServiceByName(
              "ExportService"),
          exportjobs::v1::ClaimExportJobRequest::descriptor()->file()->FindServiceByName(
              "WorkerService")}) {
      if (service == nullptr) continue;
      for (int i = 0; i < service->method_count(); ++i) {
        auto method = std::make_unique<MethodMetrics>();
        method->service = service->full_name();
        method->method = service->method(i)->name();
        method->latency =
            &handling.Add({{"service", method->service}, {"method", method->method}}, rpc_buckets);
        method->handled_family = &handled;
        // Calls that succeed are counted from zero on; other codes appear when they occur.
        method->handled[0].store(&handled.Add(
            {{"service", method->service}, {"method", method->method}, {"code", "OK"}}));
        methods_[absl::StrCat("/", method->service, "/", method->method)] = std::move(method);
      }
    }
  }

  void OnCommit(const CommitReport& report) {
    group_requests_->Observe(report.requests);
    write_seconds_->Observe(absl::ToDoubleSeconds(report.write_time));
    for (size_t i = 0; i < report.changes.size(); ++i) {
      const JobChange& change = report.changes[i];
      const ChangeMeaning meaning = Classify(change, report.causes[i]);
      const EntityType type = (change.after ? *change.after : *change.before).job().entity_type();
      if (meaning.lease_expired) lease_expiries_.Increment(type);
      switch (meaning.event) {
        case JobEvent::kCreated:
          created_.Increment(type);
          break;
        case JobEvent::kClaimed:
          claims_.Increment(type);
          break;
        case JobEvent::kCompleted:
          completed_.Increment(type);
          break;
        case JobEvent::kFailed:
          failed_.Increment(type);
          break;
        case JobEvent::kCancelled:
          cancelled_.Increment(type);
          break;
        case JobEvent::kRetried:
          retries_.Increment(type);
          break;
        case JobEvent::kReleased:
          releases_.Increment(type);
          break;
        case JobEvent::kDeleted:
          (meaning.by_janitor ? deleted_by_janitor_ : deleted_by_request_)->Increment();
          break;
        case JobEvent::kFilesExpired:
          files_expired_->Increment();
          break;
        case JobEvent::kPartUploaded:
          parts_uploaded_->Increment();
          break;
        case JobEvent::kProgress:
        case JobEvent::kCancelRequested:
        case JobEvent::kUpdated:
          break;
      }
    }
  }

  // The live gauges (and the dropped log lines), read from the sources.
  std::vector<prometheus::MetricFamily> Gauges() const {
    std::vector<prometheus::MetricFamily> gauges;
    const std::optional<JobManager::Counts> counts =
        sources_.counts ? sources_.counts() : std::nullopt;
    if (counts && counts->by_status) {
      prometheus::MetricFamily jobs = GaugeFamily(
          "exportd_jobs", "Jobs stored, by status (absent until the count at start has finished).");
      for (size_t status = 1; status < counts->by_status->size(); ++status) {
        const std::string_view name = StatusJsonName(static_cast<ExportJobStatus>(status));
        if (name.empty()) continue;
        AddGauge(jobs, static_cast<double>((*counts->by_status)[status]),
                 {{"status", std::string(name)}});
      }
      gauges.push_back(std::move(jobs));
    }
    if (counts) {
      prometheus::MetricFamily queued =
          GaugeFamily("exportd_queued_jobs",
                      "Pending jobs in the claim queue (ready, or waiting for a retry's backoff), "
                      "by entity type.");
      for (size_t type = 1; type < counts->queued.size(); ++type) {
        const std::string_view name = EntityTypeJsonName(static_cast<EntityType>(type));
        if (name.empty()) continue;
        AddGauge(queued, static_cast<double>(counts->queued[type]),
                 {{"entity_type", std::string(name)}});
      }
      gauges.push_back(std::move(queued));
    }
    if (sources_.watchers) {
      prometheus::MetricFamily watchers =
          GaugeFamily("exportd_watchers", "Watch streams open (WatchExportJob, WatchExportJobs).");
      AddGauge(watchers, static_cast<double>(sources_.watchers()));
      gauges.push_back(std::move(watchers));
    }
    if (sources_.waiting_claims) {
      prometheus::MetricFamily waiting =
          GaugeFamily("exportd_waiting_claims", "Claims of workers waiting for a job.");
      AddGauge(waiting, static_cast<double>(sources_.waiting_claims()));
      gauges.push_back(std::move(waiting));
    }
    prometheus::MetricFamily dropped;
    dropped.name = "exportd_log_lines_dropped_total";
    dropped.help =
        "Log messages (a line, or a commit group's lines) dropped because the asynchronous log "
        "queue was full.";
    dropped.type = prometheus::MetricType::Counter;
    prometheus::ClientMetric dropped_lines;
    dropped_lines.counter.value = static_cast<double>(DroppedLogLines());
    dropped.metric.push_back(std::move(dropped_lines));
    gauges.push_back(std::move(dropped));
    if (sources_.ready) {
      prometheus::MetricFamily ready = GaugeFamily(
          "exportd_ready", "1 while the server is ready to serve (see /readyz), else 0.");
      AddGauge(ready, sources_.ready() ? 1 : 0);
      gauges.push_back(std::move(ready));
    }
    return gauges;
  }

  const MethodMetrics* FindMethod(const char* path) const {
    if (path == nullptr) return nullptr;
    auto it = methods_.find(absl::string_view(path));
    return it == methods_.end() ? nullptr : it->second.get();
  }

  Sources sources_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  PerEntity created_, claims_, completed_, failed_, cancelled_, retries_, lease_expiries_,
      releases_;
  Counter* deleted_by_request_ = nullptr;
  Counter* deleted_by_janitor_ = nullptr;
  Counter* files_expired_ = nullptr;
  Counter* parts_uploaded_ = nullptr;
  Counter* upload_bytes_ = nullptr;
  Counter* janitor_ok_ = nullptr;
  Counter* janitor_error_ = nullptr;
  Histogram* group_requests_ = nullptr;
  Histogram* write_seconds_ = nullptr;
  // By full method name ("/exportjobs.v1.ExportService/CreateExportJob"); constant after
  // construction.
  absl::flat_hash_map<std::string, std::unique_ptr<MethodMetrics>> methods_;
};

}  // namespace exportd

namespace exportd {
namespace {

// Times one call: from its arrival (when gRPC creates the interceptor) to the status the server
// sends; a call that ends without sending one (cancelled) is counted CANCELLED when it is
// destroyed.
class RpcInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit RpcInterceptor(const MethodMetrics* method)
      : method_(method), start_(std::chrono::steady_clock::now()) {}

  ~RpcInterceptor() override {
    if (!recorded_) Record(grpc::Status::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus());
    }
    methods->Proceed();
  }

 private:
  void Record(const grpc::Status& status) {
    if (recorded_.exchange(true)) return;
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start_;
    method_->latency->Observe(took.count());
    method_->Handled(static_cast<int>(status.error_code()));
    if (!IsExpected(status.error_code())) {
      // Queued for the asynchronous logger: no I/O on this (gRPC) thread.
      LogEvent(LogLevel::kWarn, "rpc.error",
               {{"service", method_->service},
                {"method", method_->method},
                {"code", CodeName(static_cast<int>(status.error_code()))},
                {"message", status.error_message()},
                {"duration_ms", took.count() * 1000}});
    }
  }

  // The outcomes of normal operation: success, a caller that went away, and the domain errors
  // the API answers (see docs/architecture.md). Anything else is worth a warning.
  static bool IsExpected(grpc::StatusCode code) {
    return IsExpectedOutcome(static_cast<absl::StatusCode>(code));
  }

  const MethodMetrics* const method_;
  const std::chrono::steady_clock::time_point start_;
  // Set by the first Record. Atomic because the destructor may run on another gRPC thread than
  // the interception that recorded.
  std::atomic<bool> recorded_{false};
};

class RpcInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcInterceptorFactory(const ServerMetrics::Impl* metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const MethodMetrics* method = metrics_->FindMethod(info->method());
    return method == nullptr ? nullptr : new RpcInterceptor(method);
  }

 private:
  const ServerMetrics::Impl* const metrics_;
};

}  // namespace

ServerMetrics::ServerMetrics(Sources sources) : impl_(std::make_unique<Impl>(std::move(sources))) {}

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::OnCommit(const CommitReport& report) { impl_->OnCommit(report); }

void ServerMetrics::AddUploadBytes(int64_t bytes) {
  impl_->upload_bytes_->Increment(static_cast<double>(bytes));
}

void ServerMetrics::JanitorRun(bool ok) {
  (ok ? impl_->janitor_ok_ : impl_->janitor_error_)->Increment();
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
ServerMetrics::NewRpcInterceptorFactory() {
  return std::make_unique<RpcInterceptorFactory>(impl_.get());
}

std::string ServerMetrics::Scrape() const {
  std::vector<prometheus::MetricFamily> families = impl_->Gauges();
  std::vector<prometheus::MetricFamily> kept = impl_->registry_->Collect();
  families.insert(families.end(), std::make_move_iterator(kept.begin()),
                  std::make_move_iterator(kept.end()));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace exportd
