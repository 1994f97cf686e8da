#include "client/export_client.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/str_cat.h"
#include "exportjobs/v1/export_service.grpc.pb.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "google/protobuf/empty.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace exportd::client {
namespace {

using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportJobEvent;
using exportjobs::v1::ExportService;
using exportjobs::v1::WorkerService;

// The channel's keepalive: a ping every 30 s while calls are open finds a dead connection
// (a half-open TCP connection, a restarted load balancer) within 50 s. export-server accepts
// pings 10 s apart (--min_client_ping_interval); other gRPC servers keep gRPC's default policy,
// which counts pings less than 5 minutes apart without data as strikes.
constexpr int kKeepaliveTimeMs = 30 * 1000;
constexpr int kKeepaliveTimeoutMs = 20 * 1000;
constexpr int kInitialReconnectBackoffMs = 500;
constexpr int kMaxReconnectBackoffMs = 5000;

// WatchAll reconnects like Watch with its default WatchOptions.
constexpr int kWatchAllMaxReconnects = ExportClient::WatchOptions{}.max_reconnects;

absl::Status CancelledStatus() { return absl::CancelledError("the call was cancelled"); }

// `backoff` randomised by ±20%.
absl::Duration Jittered(absl::Duration backoff, absl::BitGen& random) {
  return backoff * absl::Uniform(random, 0.8, 1.2);
}

// Waits `duration`, or until `cancel` is cancelled; false when cancelled.
bool Backoff(CancelToken* cancel, absl::Duration duration) {
  if (cancel != nullptr) return cancel->SleepUnlessCancelled(duration);
  absl::SleepFor(duration);
  return true;
}

bool IsRetryable(const RetryPolicy& policy, absl::StatusCode code) {
  return std::find(policy.retryable_codes.begin(), policy.retryable_codes.end(), code) !=
         policy.retryable_codes.end();
}

// Sets a try's deadline and metadata.
void Prepare(grpc::ClientContext& context, const CallOptions& options, absl::Time deadline) {
  context.set_deadline(absl::ToChronoTime(deadline));
  if (!options.token.empty()) context.AddMetadata("authorization", "Bearer " + options.token);
  for (const auto& [key, value] : options.metadata) context.AddMetadata(key, value);
}

absl::StatusOr<std::string> ReadPem(const char* option, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(option, ": cannot read \"", path, "\""));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Keeps `context` registered with `cancel` (if any) for the registration's lifetime.
class Registration {
 public:
  Registration(CancelToken* cancel, grpc::ClientContext* context)
      : cancel_(cancel),
        context_(context),
        registered_(cancel == nullptr || cancel->Register(context)) {}
  ~Registration() {
    if (cancel_ != nullptr && registered_) cancel_->Unregister(context_);
  }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;

  // False when the token was already cancelled: the call must not start.
  bool ok() const { return registered_; }

 private:
  CancelToken* const cancel_;
  grpc::ClientContext* const context_;
  const bool registered_;
};

// How the tries of one call are run.
struct Plan {
  const CallOptions* options = nullptr;
  CancelToken* cancel = nullptr;
  // The deadline of the call (or of each try, with options->timeout_per_try).
  absl::Duration timeout;
  // Retries only for calls that are safe to repeat.
  bool retry = true;
  int max_attempts = 0;  // 0: options->retry.max_attempts.
  absl::Time retry_until = absl::InfiniteFuture();
  // Told of each retry before its backoff (CallControl::on_retry). May be null or empty.
  const std::function<void(const absl::Status&, int, absl::Duration)>* on_retry = nullptr;
};

// One try: makes the call on `context` (prepared and registered). `tries` counts from 1: more
// than 1 means an earlier try failed retryably, so its outcome at the server is unknown. Setting
// *final ends the call with the returned status, retryable or not.
using Try = std::function<absl::Status(grpc::ClientContext& context, int tries, bool* final)>;

// Runs tries until one succeeds, fails for good, the tries run out or the next backoff would
// reach the deadline (or plan.retry_until). Returns the last try's status.
absl::Status Run(const Plan& plan, const Try& one_try) {
  const CallOptions& options = *plan.options;
  const RetryPolicy& policy = options.retry;
  const int max_attempts =
      !plan.retry ? 1
                  : std::max(1, plan.max_attempts > 0 ? plan.max_attempts : policy.max_attempts);
  const absl::Time call_deadline =
      options.timeout_per_try ? absl::InfiniteFuture() : absl::Now() + plan.timeout;
  absl::Duration backoff = policy.initial_backoff;
  absl::BitGen random;
  for (int tries = 1;; ++tries) {
    absl::Status status;
    bool final = false;
    {
      grpc::ClientContext context;
      Prepare(context, options,
              options.timeout_per_try ? absl::Now() + plan.timeout : call_deadline);
      Registration registration(plan.cancel, &context);
      if (!registration.ok()) return CancelledStatus();
      status = one_try(context, tries, &final);
    }
    if (status.ok() || final) return status;
    if (plan.cancel != nullptr && plan.cancel->cancelled()) return CancelledStatus();
    if (tries >= max_attempts || !IsRetryable(policy, status.code())) return status;
    const absl::Duration wait = Jittered(backoff, random);
    const absl::Time next = absl::Now() + wait;
    if (next >= call_deadline || next >= plan.retry_until) return status;
    if (plan.on_retry != nullptr && *plan.on_retry) (*plan.on_retry)(status, tries, wait);
    if (!Backoff(plan.cancel, wait)) return CancelledStatus();
    backoff = std::min(backoff * 2, policy.max_backoff);
  }
}

// A unary call: `rpc` is a method of the stub, `response` receives the answer of the try that
// succeeded.
template <typename Stub, typename Request, typename Response>
absl::Status RunUnary(const Plan& plan, Stub& stub,
                      grpc::Status (Stub::*rpc)(grpc::ClientContext*, const Request&, Response*),
                      const Request& request, Response* response) {
  return Run(plan, [&](grpc::ClientContext& context, int, bool*) {
    response->Clear();
    return FromGrpcStatus((stub.*rpc)(&context, request, response));
  });
}

// A google.protobuf.Duration of `duration`.
absl::Duration FromProtoDuration(const google::protobuf::Duration& duration) {
  return absl::Seconds(duration.seconds()) + absl::Nanoseconds(duration.nanos());
}

}  // namespace

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Keep pinging a quiet long-lived stream (a watch) every kKeepaliveTimeMs rather than only
  // twice: export-server accepts pings that far apart.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Reconnect within seconds once a server that was down is back (gRPC's default backs off to
  // two minutes).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  return grpc::CreateCustomChannel(target, credentials, args);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(const TlsOptions& tls) {
  if (!tls.enabled()) return std::shared_ptr<grpc::ChannelCredentials>();
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("tls_cert, tls_key: give both or neither");
  }
  grpc::SslCredentialsOptions ssl;
  if (!tls.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPem("tls_ca", tls.ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!tls.cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPem("tls_cert", tls.cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem("tls_key", tls.key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// --- CancelToken ---------------------------------------------------------------------------

void CancelToken::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  for (grpc::ClientContext* context : contexts_) context->TryCancel();
}

bool CancelToken::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

bool CancelToken::Register(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return false;
  contexts_.push_back(context);
  return true;
}

void CancelToken::Unregister(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  auto found = std::find(contexts_.begin(), contexts_.end(), context);
  if (found != contexts_.end()) contexts_.erase(found);
}

bool CancelToken::SleepUnlessCancelled(absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  return !mu_.AwaitWithTimeout(absl::Condition(&cancelled_), duration);
}

// --- ExportClient --------------------------------------------------------------------------

class ExportClient::Impl {
 public:
  Impl(std::shared_ptr<grpc::Channel> channel, const CallOptions* options)
      : stub(ExportService::NewStub(std::move(channel))), options(options) {}

  Plan MakePlan(CancelToken* cancel, bool retry = true) const {
    Plan plan;
    plan.options = options;
    plan.cancel = cancel;
    plan.timeout = options->timeout;
    plan.retry = retry;
    return plan;
  }

  // Reads one stream of a watch into on_event. Returns the stream's status; *stopped when
  // on_event asked to stop, *got_event when an event was delivered.
  template <typename Request>
  absl::Status ReadWatch(std::unique_ptr<grpc::ClientReader<ExportJobEvent>> (
                             ExportService::Stub::*rpc)(grpc::ClientContext*, const Request&),
                         const Request& request, absl::Time deadline, CancelToken* cancel,
                         const std::function<bool(const ExportJobEvent&)>& on_event,
                         int64_t* last_revision, bool* stopped, bool* got_event) {
    grpc::ClientContext context;
    Prepare(context, *options, deadline);
    Registration registration(cancel, &context);
    if (!registration.ok()) return CancelledStatus();
    std::unique_ptr<grpc::ClientReader<ExportJobEvent>> reader = ((*stub).*rpc)(&context, request);
    ExportJobEvent event;
    while (reader->Read(&event)) {
      if (last_revision != nullptr) {
        if (event.revision() <= *last_revision) continue;  // Seen before a reconnect.
        *last_revision = event.revision();
      }
      *got_event = true;
      if (!on_event(event)) {
        *stopped = true;
        context.TryCancel();
        break;
      }
    }
    const grpc::Status status = reader->Finish();
    if (*stopped) return absl::OkStatus();
    if (!status.ok() && cancel != nullptr && cancel->cancelled()) return CancelledStatus();
    return FromGrpcStatus(status);
  }

  // Opens streams with `open` until one ends other than UNAVAILABLE, on_event stops it, or
  // `max_reconnects` reconnects in a row brought no event.
  absl::Status Reconnecting(
      absl::Time deadline, int max_reconnects, CancelToken* cancel,
      const std::function<absl::Status(bool* stopped, bool* got_event)>& open) {
    const RetryPolicy& policy = options->retry;
    absl::Duration backoff = policy.initial_backoff;
    absl::BitGen random;
    int reconnects = 0;
    while (true) {
      bool stopped = false;
      bool got_event = false;
      absl::Status status = open(&stopped, &got_event);
      if (stopped || status.code() != absl::StatusCode::kUnavailable) return status;
      if (got_event) {
        reconnects = 0;
        backoff = policy.initial_backoff;
      }
      if (++reconnects > max_reconnects) return status;
      const absl::Duration wait = Jittered(backoff, random);
      if (absl::Now() + wait >= deadline) return status;
      if (!Backoff(cancel, wait)) return CancelledStatus();
      backoff = std::min(backoff * 2, policy.max_backoff);
    }
  }

  const std::unique_ptr<ExportService::Stub> stub;
  const CallOptions* const options;
};

ExportClient::ExportClient(std::shared_ptr<grpc::Channel> channel, CallOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(std::move(channel), &options_)) {}

ExportClient::~ExportClient() = default;

absl::StatusOr<ExportJob> ExportClient::Create(exportjobs::v1::CreateExportJobRequest request,
                                               CancelToken* cancel) {
  if (request.request_id().empty()) {
    absl::BitGen random;
    request.set_request_id(absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(random),
                                           absl::Uniform<uint64_t>(random)));
  }
  ExportJob job;
  absl::Status status = RunUnary(impl_->MakePlan(cancel), *impl_->stub,
                                 &ExportService::Stub::CreateExportJob, request, &job);
  if (!status.ok()) return status;
  return job;
}

absl::StatusOr<ExportJob> ExportClient::Get(std::string_view id, CancelToken* cancel) {
  exportjobs::v1::GetExportJobRequest request;
  request.set_id(std::string(id));
  ExportJob job;
  absl::Status status = RunUnary(impl_->MakePlan(cancel), *impl_->stub,
                                 &ExportService::Stub::GetExportJob, request, &job);
  if (!status.ok()) return status;
  return job;
}

absl::StatusOr<exportjobs::v1::ListExportJobsResponse> ExportClient::List(
    const exportjobs::v1::ListExportJobsRequest& request, CancelToken* cancel) {
  exportjobs::v1::ListExportJobsResponse response;
  absl::Status status = RunUnary(impl_->MakePlan(cancel), *impl_->stub,
                                 &ExportService::Stub::ListExportJobs, request, &response);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<ExportJob> ExportClient::Cancel(std::string_view id, CancelToken* cancel) {
  exportjobs::v1::CancelExportJobRequest request;
  request.set_id(std::string(id));
  ExportJob job;
  const absl::Time deadline = absl::Now() + options_.timeout;
  absl::Status status = Run(impl_->MakePlan(cancel), [&](grpc::ClientContext& context, int tries,
                                                         bool*) {
    job.Clear();
    absl::Status result = FromGrpcStatus(impl_->stub->CancelExportJob(&context, request, &job));
    if (result.code() != absl::StatusCode::kFailedPrecondition || tries == 1) return result;
    // An earlier try may have cancelled the job (its answer was lost): then this is the job.
    grpc::ClientContext lookup;
    Prepare(lookup, options_, options_.timeout_per_try ? absl::Now() + options_.timeout : deadline);
    Registration registration(cancel, &lookup);
    if (!registration.ok()) return result;
    exportjobs::v1::GetExportJobRequest get;
    get.set_id(request.id());
    ExportJob current;
    if (impl_->stub->GetExportJob(&lookup, get, &current).ok() &&
        current.status() == exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED) {
      job = std::move(current);
      return absl::OkStatus();
    }
    return result;
  });
  if (!status.ok()) return status;
  return job;
}

absl::Status ExportClient::Delete(std::string_view id, CancelToken* cancel) {
  exportjobs::v1::DeleteExportJobRequest request;
  request.set_id(std::string(id));
  return Run(impl_->MakePlan(cancel), [&](grpc::ClientContext& context, int tries, bool*) {
    google::protobuf::Empty empty;
    absl::Status result = FromGrpcStatus(impl_->stub->DeleteExportJob(&context, request, &empty));
    // An earlier try may have deleted the job (its answer was lost).
    if (result.code() == absl::StatusCode::kNotFound && tries > 1) return absl::OkStatus();
    return result;
  });
}

absl::StatusOr<std::vector<exportjobs::v1::ExportableField>> ExportClient::ListFields(
    exportjobs::v1::EntityType entity_type, CancelToken* cancel) {
  exportjobs::v1::ListExportableFieldsRequest request;
  request.set_entity_type(entity_type);
  exportjobs::v1::ListExportableFieldsResponse response;
  absl::Status status = RunUnary(impl_->MakePlan(cancel), *impl_->stub,
                                 &ExportService::Stub::ListExportableFields, request, &response);
  if (!status.ok()) return status;
  return std::vector<exportjobs::v1::ExportableField>(
      std::make_move_iterator(response.mutable_fields()->begin()),
      std::make_move_iterator(response.mutable_fields()->end()));
}

absl::Status ExportClient::Watch(std::string_view id, const WatchOptions& watch,
                                 const std::function<bool(const ExportJobEvent&)>& on_event,
                                 CancelToken* cancel) {
  const absl::Time deadline = absl::Now() + watch.timeout;
  int64_t last_revision = watch.since_revision;
  exportjobs::v1::WatchExportJobRequest request;
  request.set_id(std::string(id));
  return impl_->Reconnecting(
      deadline, watch.max_reconnects, cancel, [&](bool* stopped, bool* got_event) {
        // Resume after the last revision delivered (or the caller's since_revision).
        request.set_since_revision(last_revision);
        return impl_->ReadWatch(&ExportService::Stub::WatchExportJob, request, deadline, cancel,
                                on_event, &last_revision, stopped, got_event);
      });
}

absl::Status ExportClient::WatchAll(const exportjobs::v1::WatchExportJobsRequest& request,
                                    absl::Duration timeout,
                                    const std::function<bool(const ExportJobEvent&)>& on_event,
                                    CancelToken* cancel) {
  const absl::Time deadline = absl::Now() + timeout;
  return impl_->Reconnecting(
      deadline, kWatchAllMaxReconnects, cancel, [&](bool* stopped, bool* got_event) {
        return impl_->ReadWatch(&ExportService::Stub::WatchExportJobs, request, deadline, cancel,
                                on_event, /*last_revision=*/nullptr, stopped, got_event);
      });
}

absl::Status ExportClient::Download(std::string_view id, int part, absl::Duration timeout,
                                    const std::function<absl::Status(std::string_view)>& sink,
                                    CancelToken* cancel) {
  exportjobs::v1::DownloadExportRequest request;
  request.set_id(std::string(id));
  request.set_part(part);
  grpc::ClientContext context;
  Prepare(context, options_, absl::Now() + timeout);
  Registration registration(cancel, &context);
  if (!registration.ok()) return CancelledStatus();
  std::unique_ptr<grpc::ClientReader<exportjobs::v1::DownloadExportResponse>> reader =
      impl_->stub->DownloadExport(&context, request);
  exportjobs::v1::DownloadExportResponse response;
  while (reader->Read(&response)) {
    absl::Status sunk = sink(response.chunk());
    if (!sunk.ok()) {
      context.TryCancel();
      reader->Finish();
      return sunk;
    }
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok() && cancel != nullptr && cancel->cancelled()) return CancelledStatus();
  return FromGrpcStatus(status);
}

// --- WorkerClient --------------------------------------------------------------------------

class WorkerClient::Impl {
 public:
  Impl(std::shared_ptr<grpc::Channel> channel, const CallOptions* options)
      : stub(WorkerService::NewStub(std::move(channel))), options(options) {}

  Plan MakePlan(const CallControl& control, absl::Duration timeout) const {
    Plan plan;
    plan.options = options;
    plan.cancel = control.cancel;
    plan.timeout = timeout;
    plan.max_attempts = control.max_attempts;
    plan.retry_until = control.retry_until;
    plan.on_retry = &control.on_retry;
    return plan;
  }

  template <typename Request, typename Response>
  absl::StatusOr<Response> Unary(
      grpc::Status (WorkerService::Stub::*rpc)(grpc::ClientContext*, const Request&, Response*),
      const Request& request, const CallControl& control, absl::Duration timeout) {
    Response response;
    absl::Status status = RunUnary(MakePlan(control, timeout), *stub, rpc, request, &response);
    if (!status.ok()) return status;
    return response;
  }

  const std::unique_ptr<WorkerService::Stub> stub;
  const CallOptions* const options;
};

WorkerClient::WorkerClient(std::shared_ptr<grpc::Channel> channel, CallOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(std::move(channel), &options_)) {}

WorkerClient::~WorkerClient() = default;

absl::StatusOr<exportjobs::v1::ClaimExportJobResponse> WorkerClient::Claim(
    const exportjobs::v1::ClaimExportJobRequest& request, const CallControl& control) {
  return impl_->Unary(&WorkerService::Stub::ClaimExportJob, request, control,
                      FromProtoDuration(request.wait()) + options_.timeout);
}

absl::StatusOr<exportjobs::v1::ReportProgressResponse> WorkerClient::ReportProgress(
    const exportjobs::v1::ReportProgressRequest& request, const CallControl& control) {
  return impl_->Unary(&WorkerService::Stub::ReportProgress, request, control, options_.timeout);
}

absl::StatusOr<exportjobs::v1::UploadExportPartResponse> WorkerClient::Upload(
    const PartUpload& part, const CallControl& control) {
  using exportjobs::v1::UploadExportPartRequest;
  Plan plan = impl_->MakePlan(
      control,
      options_.timeout + absl::Seconds(std::max<int64_t>(0, part.trailer.size_bytes()) >> 20));
  if (!part.rewind) plan.retry = false;
  exportjobs::v1::UploadExportPartResponse response;
  absl::Status status = Run(plan, [&](grpc::ClientContext& context, int tries, bool* final) {
    if (tries > 1) {
      if (absl::Status rewound = part.rewind(); !rewound.ok()) {
        *final = true;
        return rewound;
      }
    }
    response.Clear();
    std::unique_ptr<grpc::ClientWriter<UploadExportPartRequest>> stream =
        impl_->stub->UploadExportPart(&context, &response);
    UploadExportPartRequest message;
    *message.mutable_header() = part.header;
    if (!stream->Write(message)) return FromGrpcStatus(stream->Finish());
    while (true) {
      absl::StatusOr<std::string> chunk = part.read();
      if (!chunk.ok()) {
        *final = true;
        context.TryCancel();
        stream->Finish();
        return chunk.status();
      }
      if (chunk->empty()) break;
      if (chunk->size() <= kMaxChunkBytes) {
        message.set_chunk(*std::move(chunk));
        if (!stream->Write(message)) return FromGrpcStatus(stream->Finish());
        continue;
      }
      for (size_t offset = 0; offset < chunk->size(); offset += kMaxChunkBytes) {
        message.set_chunk(chunk->substr(offset, kMaxChunkBytes));
        if (!stream->Write(message)) return FromGrpcStatus(stream->Finish());
      }
    }
    *message.mutable_trailer() = part.trailer;
    if (!stream->Write(message)) return FromGrpcStatus(stream->Finish());
    stream->WritesDone();
    return FromGrpcStatus(stream->Finish());
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<ExportJob> WorkerClient::Complete(
    const exportjobs::v1::CompleteExportJobRequest& request, const CallControl& control) {
  return impl_->Unary(&WorkerService::Stub::CompleteExportJob, request, control, options_.timeout);
}

absl::StatusOr<ExportJob> WorkerClient::Fail(const exportjobs::v1::FailExportJobRequest& request,
                                             const CallControl& control) {
  return impl_->Unary(&WorkerService::Stub::FailExportJob, request, control, options_.timeout);
}

absl::StatusOr<ExportJob> WorkerClient::Release(
    const exportjobs::v1::ReleaseExportJobRequest& request, const CallControl& control) {
  return impl_->Unary(&WorkerService::Stub::ReleaseExportJob, request, control, options_.timeout);
}

}  // namespace exportd::client
