#include "client/export_client.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/random/random.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "common/str_cat.h"
#include "exportjobs/v1/export_service.grpc.pb.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "google/protobuf/any.pb.h"
#include "google/protobuf/empty.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
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

// --- Coalesced creates -------------------------------------------------------------------------

namespace {

// A request_id for a create that has none: 32 hex digits, a time in microseconds since the Unix
// epoch and then 64 random bits. Like a UUIDv7, an id made later sorts later: the time is the
// clock's, or one more than the last id's in this process when the clock has not moved on. So
// the server's idempotency index (ordered by tenant and request_id) takes each new id at its
// end, where the previous insert left off, instead of at a random place among all it holds.
std::string NewRequestId() {
  static std::atomic<int64_t> last_micros{0};
  const int64_t now = absl::ToUnixMicros(absl::Now());
  int64_t last = last_micros.load(std::memory_order_relaxed);
  int64_t micros = std::max(now, last + 1);
  while (!last_micros.compare_exchange_weak(last, micros, std::memory_order_relaxed)) {
    micros = std::max(now, last + 1);
  }
  thread_local absl::BitGen random;  // Seeded once per thread, not per create.
  return absl::StrFormat("%016x%016x", static_cast<uint64_t>(micros),
                         absl::Uniform<uint64_t>(random));
}

// An item's error from a BatchCreateExportJobs result, with the server's "requests[i]." prefix
// taken off (the index is of the batch the client made, not of anything the caller knows) and
// the error details kept as payloads.
absl::Status FromItemError(const exportjobs::v1::ItemError& error) {
  absl::string_view message = error.message();
  if (absl::ConsumePrefix(&message, "requests[")) {
    const size_t end = message.find("].");
    if (end != absl::string_view::npos) {
      message.remove_prefix(end + 2);
    } else {
      message = error.message();
    }
  }
  const auto code =
      error.code() == 0 ? absl::StatusCode::kUnknown : static_cast<absl::StatusCode>(error.code());
  absl::Status status(code, message);
  for (const google::protobuf::Any& detail : error.details()) {
    status.SetPayload(detail.type_url(), absl::Cord(detail.value()));
  }
  return status;
}

}  // namespace

// Queues creates and sends them: alone while fewer than max_calls_in_flight create calls are in
// flight, else together in the next BatchCreateExportJobs call once one is answered. Retries
// wait on a thread of its own (started at the first retry). Every RPC is a callback-API call;
// nothing here blocks a gRPC thread.
class ExportClient::Coalescer {
 public:
  Coalescer(ExportService::Stub* stub, const CallOptions* options, CoalesceOptions coalesce)
      : stub_(stub),
        options_(options),
        coalesce_(coalesce),
        max_batch_size_(std::max(1, coalesce.max_batch_size)) {}

  ~Coalescer() {
    {
      absl::MutexLock lock(&mu_);
      closing_ = true;
      wake_retrier_ = true;
    }
    if (retrier_.joinable()) retrier_.join();
    std::vector<std::unique_ptr<Item>> left;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&in_flight_zero_));
      for (auto& [due, item] : delayed_) left.push_back(std::move(item));
      delayed_.clear();
      for (auto& item : queue_) left.push_back(std::move(item));
      queue_.clear();
    }
    for (auto& item : left) {
      std::move(item->done)(absl::CancelledError("the client was destroyed before the create"));
    }
  }

  // One create: its request (with a request_id), its callback, and what its tries used.
  struct Item {
    exportjobs::v1::CreateExportJobRequest request;
    CreateCallback done;
    // The create's deadline (InfiniteFuture with timeout_per_try: each try has its own).
    absl::Time deadline;
    int tries = 0;
    absl::Duration backoff;
    int64_t bytes = 0;
  };

  std::unique_ptr<Item> MakeItem(exportjobs::v1::CreateExportJobRequest request,
                                 CreateCallback done) const {
    auto item = std::make_unique<Item>();
    if (request.request_id().empty()) request.set_request_id(NewRequestId());
    item->bytes = static_cast<int64_t>(request.ByteSizeLong());
    item->request = std::move(request);
    item->done = std::move(done);
    item->deadline =
        options_->timeout_per_try ? absl::InfiniteFuture() : absl::Now() + options_->timeout;
    item->backoff = options_->retry.initial_backoff;
    return item;
  }

  // Queues the items and sends what may leave now.
  void Submit(std::vector<std::unique_ptr<Item>> items) {
    {
      absl::MutexLock lock(&mu_);
      for (auto& item : items) queue_.push_back(std::move(item));
    }
    Pump();
  }

  // Sends `items` at once in batches (CreateMany with coalescing off), beside any limit.
  void SendTogether(std::vector<std::unique_ptr<Item>> items) {
    std::vector<std::vector<std::unique_ptr<Item>>> batches;
    {
      absl::MutexLock lock(&mu_);
      std::deque<std::unique_ptr<Item>> pending(std::make_move_iterator(items.begin()),
                                                std::make_move_iterator(items.end()));
      while (!pending.empty()) {
        batches.push_back(TakeBatch(pending));
        ++in_flight_;
        in_flight_zero_ = false;
      }
    }
    for (auto& batch : batches) Send(std::move(batch));
  }

 private:
  // Takes the next batch from the front of `from`: at least one item, then while it stays within
  // the size and byte limits. REQUIRES: !from.empty().
  std::vector<std::unique_ptr<Item>> TakeBatch(std::deque<std::unique_ptr<Item>>& from)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::unique_ptr<Item>> batch;
    int64_t bytes = 0;
    const bool alone = unimplemented_;
    while (!from.empty()) {
      const int64_t next = from.front()->bytes;
      if (!batch.empty() && (alone || static_cast<int>(batch.size()) >= max_batch_size_ ||
                             bytes + next > coalesce_.max_batch_bytes)) {
        break;
      }
      bytes += next;
      batch.push_back(std::move(from.front()));
      from.pop_front();
    }
    return batch;
  }

  // Sends the queued items that may leave: while a call slot is free (or without a limit when
  // creates are not coalesced), the next batch.
  void Pump() {
    std::vector<std::vector<std::unique_ptr<Item>>> batches;
    {
      absl::MutexLock lock(&mu_);
      TakeSendable(batches);
    }
    for (auto& batch : batches) Send(std::move(batch));
  }

  // Moves the batches that may leave now into `batches`, each counted in in_flight_.
  void TakeSendable(std::vector<std::vector<std::unique_ptr<Item>>>& batches)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closing_) return;
    const bool limited = coalesce_.enabled && !unimplemented_;
    while (!queue_.empty() &&
           (!limited || in_flight_ < std::max(1, coalesce_.max_calls_in_flight))) {
      batches.push_back(TakeBatch(queue_));
      ++in_flight_;
      in_flight_zero_ = false;
    }
  }

  // One call in flight: the items it carries and the call's state.
  struct Call {
    std::vector<std::unique_ptr<Item>> items;
    grpc::ClientContext context;
    absl::Time deadline;
    exportjobs::v1::BatchCreateExportJobsRequest batch_request;
    exportjobs::v1::BatchCreateExportJobsResponse batch_response;
    exportjobs::v1::ExportJob job;
  };

  // Makes the call of `items` (counted in in_flight_): CreateExportJob for one item,
  // BatchCreateExportJobs for more. Items whose deadline has passed end DEADLINE_EXCEEDED.
  void Send(std::vector<std::unique_ptr<Item>> items) {
    const absl::Time now = absl::Now();
    auto call = std::make_shared<Call>();
    call->deadline = absl::InfiniteFuture();
    std::vector<std::unique_ptr<Item>> expired;
    for (auto& item : items) {
      if (item->deadline <= now) {
        expired.push_back(std::move(item));
        continue;
      }
      item->tries += 1;
      // The call ends by the earliest deadline of its items; those with time left after it are
      // sent again (see OnDone).
      const absl::Time deadline =
          options_->timeout_per_try ? now + options_->timeout : item->deadline;
      call->deadline = std::min(call->deadline, deadline);
      call->items.push_back(std::move(item));
    }
    for (auto& item : expired) {
      std::move(item->done)(absl::DeadlineExceededError("deadline exceeded before the create"));
    }
    if (call->items.empty()) return Finished();
    Prepare(call->context, *options_, call->deadline);
    if (call->items.size() == 1) {
      stub_->async()->CreateExportJob(&call->context, &call->items[0]->request, &call->job,
                                      [this, call](grpc::Status status) { OnDone(call, status); });
      return;
    }
    // The requests move into the call (no copy); OnDone moves them back, for retries.
    call->batch_request.mutable_requests()->Reserve(static_cast<int>(call->items.size()));
    for (const auto& item : call->items) {
      *call->batch_request.add_requests() = std::move(item->request);
    }
    stub_->async()->BatchCreateExportJobs(
        &call->context, &call->batch_request, &call->batch_response,
        [this, call](grpc::Status status) { OnDone(call, status); });
  }

  void OnDone(const std::shared_ptr<Call>& call, const grpc::Status& grpc_status) {
    const absl::Status status = FromGrpcStatus(grpc_status);
    const bool batch = call->items.size() > 1;
    if (batch) {
      for (size_t i = 0; i < call->items.size(); ++i) {
        call->items[i]->request =
            std::move(*call->batch_request.mutable_requests(static_cast<int>(i)));
      }
    }
    std::vector<std::unique_ptr<Item>> again;  // sent again, with no try counted
    if (status.ok() && !batch) {
      Settle(std::move(call->items[0]), std::move(call->job));
    } else if (status.ok()) {
      if (call->batch_response.results_size() != static_cast<int>(call->items.size())) {
        const absl::Status malformed = absl::InternalError(
            absl::StrCat("BatchCreateExportJobs answered ", call->batch_response.results_size(),
                         " results for ", call->items.size(), " requests"));
        for (auto& item : call->items) Settle(std::move(item), malformed);
      } else {
        for (size_t i = 0; i < call->items.size(); ++i) {
          auto* result = call->batch_response.mutable_results(static_cast<int>(i));
          if (result->has_job()) {
            Settle(std::move(call->items[i]), std::move(*result->mutable_job()));
          } else {
            Settle(std::move(call->items[i]), FromItemError(result->error()));
          }
        }
      }
    } else if (batch && status.code() == absl::StatusCode::kUnimplemented) {
      // A server without BatchCreateExportJobs: from now on every create is its own call.
      {
        absl::MutexLock lock(&mu_);
        unimplemented_ = true;
      }
      again = std::move(call->items);
    } else if (batch && status.code() == absl::StatusCode::kInvalidArgument &&
               absl::StartsWith(status.message(), "requests:")) {
      // The server takes fewer items per call than this client sends: halve until it does.
      {
        absl::MutexLock lock(&mu_);
        max_batch_size_ =
            std::max(1, std::min(max_batch_size_, static_cast<int>(call->items.size()) / 2));
      }
      again = std::move(call->items);
    } else if (status.code() == absl::StatusCode::kDeadlineExceeded) {
      // The call ended at the earliest deadline of its items: the others still have time.
      const absl::Time now = absl::Now();
      for (auto& item : call->items) {
        if (item->deadline > now && !options_->timeout_per_try) {
          again.push_back(std::move(item));
        } else {
          Settle(std::move(item), status);
        }
      }
    } else {
      for (auto& item : call->items) Settle(std::move(item), status);
    }
    for (auto& item : again) item->tries -= 1;
    {
      absl::MutexLock lock(&mu_);
      // Sent again first: they are the oldest.
      for (auto it = again.rbegin(); it != again.rend(); ++it) queue_.push_front(std::move(*it));
    }
    Finished();
  }

  // A call is over: frees its slot and sends what waited for it. The slot is freed and the next
  // batches are taken in one critical section, and nothing of this object is touched after it
  // when none was taken: the destructor may run as soon as in_flight_ reaches zero.
  void Finished() {
    std::vector<std::vector<std::unique_ptr<Item>>> batches;
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      TakeSendable(batches);
      in_flight_zero_ = in_flight_ == 0;
    }
    for (auto& batch : batches) Send(std::move(batch));
  }

  // The outcome of one try of an item: its result, or a retry after its backoff.
  void Settle(std::unique_ptr<Item> item, absl::StatusOr<ExportJob> result) {
    if (result.ok() || !IsRetryable(options_->retry, result.status().code()) ||
        item->tries >= std::max(1, options_->retry.max_attempts)) {
      return std::move(item->done)(std::move(result));
    }
    absl::Duration wait;
    {
      absl::MutexLock lock(&mu_);
      wait = Jittered(item->backoff, random_);
    }
    const absl::Time due = absl::Now() + wait;
    if (due >= item->deadline) return std::move(item->done)(std::move(result));
    item->backoff = std::min(item->backoff * 2, options_->retry.max_backoff);
    {
      absl::MutexLock lock(&mu_);
      if (!closing_) {
        if (!retrier_.joinable()) retrier_ = std::thread([this] { RetryLoop(); });
        if (delayed_.empty() || due < delayed_.begin()->first) wake_retrier_ = true;
        delayed_.emplace(due, std::move(item));
        return;
      }
    }
    std::move(item->done)(std::move(result));
  }

  // The retry thread: queues each delayed item when its backoff is over.
  void RetryLoop() {
    absl::MutexLock lock(&mu_);
    while (!closing_) {
      const absl::Time now = absl::Now();
      bool due = false;
      while (!delayed_.empty() && delayed_.begin()->first <= now) {
        queue_.push_back(std::move(delayed_.begin()->second));
        delayed_.erase(delayed_.begin());
        due = true;
      }
      if (due) {
        mu_.Unlock();
        Pump();
        mu_.Lock();
        continue;
      }
      const absl::Time next = delayed_.empty() ? absl::InfiniteFuture() : delayed_.begin()->first;
      wake_retrier_ = false;
      mu_.AwaitWithDeadline(absl::Condition(&wake_retrier_), next);
    }
  }

  ExportService::Stub* const stub_;
  const CallOptions* const options_;
  const CoalesceOptions coalesce_;

  absl::Mutex mu_;
  std::deque<std::unique_ptr<Item>> queue_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, std::unique_ptr<Item>> delayed_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool in_flight_zero_ ABSL_GUARDED_BY(mu_) = true;
  bool unimplemented_ ABSL_GUARDED_BY(mu_) = false;
  int max_batch_size_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_retrier_ ABSL_GUARDED_BY(mu_) = false;
  absl::BitGen random_ ABSL_GUARDED_BY(mu_);
  std::thread retrier_;
};

ExportClient::ExportClient(std::shared_ptr<grpc::Channel> channel, CallOptions options,
                           CoalesceOptions coalesce)
    : options_(std::move(options)),
      impl_(std::make_unique<Impl>(std::move(channel), &options_)),
      coalescer_(std::make_unique<Coalescer>(impl_->stub.get(), &options_, coalesce)),
      coalesce_(coalesce.enabled) {}

ExportClient::~ExportClient() = default;

absl::StatusOr<ExportJob> ExportClient::Create(exportjobs::v1::CreateExportJobRequest request,
                                               CancelToken* cancel) {
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
  if (cancel == nullptr && coalesce_) {
    absl::Notification done;
    absl::StatusOr<ExportJob> result;
    CreateAsync(std::move(request), [&](absl::StatusOr<ExportJob> job) {
      result = std::move(job);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }
  ExportJob job;
  absl::Status status = RunUnary(impl_->MakePlan(cancel), *impl_->stub,
                                 &ExportService::Stub::CreateExportJob, request, &job);
  if (!status.ok()) return status;
  return job;
}

void ExportClient::CreateAsync(exportjobs::v1::CreateExportJobRequest request,
                               CreateCallback done) {
  std::vector<std::unique_ptr<Coalescer::Item>> items;
  items.push_back(coalescer_->MakeItem(std::move(request), std::move(done)));
  coalescer_->Submit(std::move(items));
}

std::vector<absl::StatusOr<ExportJob>> ExportClient::CreateMany(
    std::vector<exportjobs::v1::CreateExportJobRequest> requests) {
  std::vector<absl::StatusOr<ExportJob>> results(requests.size(),
                                                 absl::UnknownError("not answered"));
  absl::BlockingCounter left(static_cast<int>(requests.size()));
  std::vector<std::unique_ptr<Coalescer::Item>> items;
  items.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    items.push_back(coalescer_->MakeItem(
        std::move(requests[i]), [&results, &left, i](absl::StatusOr<ExportJob> job) {
          if (!job.ok()) {
            // Named by the caller's index (the client's batches are its own business).
            absl::Status named(job.status().code(),
                               absl::StrCat("requests[", i, "].", job.status().message()));
            job.status().ForEachPayload(
                [&named](absl::string_view type_url, const absl::Cord& payload) {
                  named.SetPayload(type_url, payload);
                });
            job = named;
          }
          results[i] = std::move(job);
          left.DecrementCount();
        }));
  }
  if (items.empty()) return results;
  if (coalesce_) {
    coalescer_->Submit(std::move(items));
  } else {
    coalescer_->SendTogether(std::move(items));
  }
  left.Wait();
  return results;
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

namespace {

// UploadExportPart's full name, for calling it with messages written as bytes.
constexpr char kUploadMethod[] = "/exportjobs.v1.WorkerService/UploadExportPart";

// The bytes behind an OwnedSlice. gRPC may drop a slice's last reference on another thread (one
// that is sending other calls' messages on the shared connection), ordered after the slice's
// creation by atomics inside libgrpc. `made` states that order in this file's own code: it is
// released once the bytes are in place and acquired before they are freed, so the order holds
// for every reader of this code, ThreadSanitizer included, which cannot see into libgrpc.
struct SliceBytes {
  explicit SliceBytes(std::string moved) : bytes(std::move(moved)) {
    made.store(true, std::memory_order_release);
  }
  std::string bytes;
  std::atomic<bool> made{false};
};

// A slice that owns `bytes` (moved, not copied).
grpc::Slice OwnedSlice(std::string bytes) {
  auto* owned = new SliceBytes(std::move(bytes));
  return grpc::Slice(
      owned->bytes.data(), owned->bytes.size(),
      [](void* p) {
        auto* owned = static_cast<SliceBytes*>(p);
        owned->made.load(std::memory_order_acquire);
        delete owned;
      },
      owned);
}

// An UploadExportPartRequest holding only `chunk`, encoded as protobuf encodes it (the field's
// tag, the length as a varint, the bytes) with the bytes referenced rather than copied: a chunk
// goes from the caller's string to the socket without a copy in between.
grpc::ByteBuffer ChunkMessage(const grpc::Slice& chunk) {
  constexpr uint8_t kChunkTag =
      (exportjobs::v1::UploadExportPartRequest::kChunkFieldNumber << 3) | 2;
  uint8_t prefix[11] = {kChunkTag};
  size_t size = 1;
  for (uint64_t length = chunk.size();; length >>= 7) {
    prefix[size++] = static_cast<uint8_t>(length < 0x80 ? length : (length & 0x7f) | 0x80);
    if (length < 0x80) break;
  }
  const grpc::Slice slices[2] = {grpc::Slice(prefix, size), chunk};
  return grpc::ByteBuffer(slices, 2);
}

// Any other upload message, serialized by protobuf.
grpc::ByteBuffer UploadMessage(const exportjobs::v1::UploadExportPartRequest& message) {
  grpc::Slice bytes(message.SerializeAsString());
  return grpc::ByteBuffer(&bytes, 1);
}

}  // namespace

class WorkerClient::Impl {
 public:
  Impl(std::shared_ptr<grpc::Channel> channel, const CallOptions* options)
      : stub(WorkerService::NewStub(channel)),
        options(options),
        channel(channel),
        upload_method(kUploadMethod, grpc::internal::RpcMethod::CLIENT_STREAMING, channel) {}

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
  // UploadExportPart, called with its messages written as bytes (see ChunkMessage) through
  // the same ClientWriter factory the generated stub uses, with grpc::ByteBuffer as the message.
  const std::shared_ptr<grpc::Channel> channel;
  const grpc::internal::RpcMethod upload_method;
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
    grpc::ByteBuffer answer;
    std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> stream(
        grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(
            impl_->channel.get(), impl_->upload_method, &context, &answer));
    // The stream's end: its status, and the server's answer parsed.
    auto finish = [&]() -> absl::Status {
      absl::Status finished = FromGrpcStatus(stream->Finish());
      if (!finished.ok()) return finished;
      if (!grpc::SerializationTraits<exportjobs::v1::UploadExportPartResponse>::Deserialize(
               &answer, &response)
               .ok()) {
        return absl::InternalError("UploadExportPart: the server's answer does not parse");
      }
      return absl::OkStatus();
    };
    UploadExportPartRequest message;
    *message.mutable_header() = part.header;
    if (!stream->Write(UploadMessage(message))) return finish();
    while (true) {
      absl::StatusOr<std::string> chunk = part.read();
      if (!chunk.ok()) {
        *final = true;
        context.TryCancel();
        stream->Finish();
        return chunk.status();
      }
      if (chunk->empty()) break;
      // One slice owns the chunk; each message refers to a piece of it.
      const grpc::Slice bytes = OwnedSlice(*std::move(chunk));
      for (size_t offset = 0; offset < bytes.size(); offset += kMaxChunkBytes) {
        if (!stream->Write(
                ChunkMessage(bytes.sub(offset, std::min(bytes.size(), offset + kMaxChunkBytes))))) {
          return finish();
        }
      }
    }
    message.Clear();
    *message.mutable_trailer() = part.trailer;
    if (!stream->Write(UploadMessage(message))) return finish();
    stream->WritesDone();
    return finish();
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<ExportJob> WorkerClient::Complete(
    const exportjobs::v1::CompleteExportJobRequest& request, const CallControl& control) {
  return impl_->Unary(&WorkerService::Stub::CompleteExportJob, request, control, options_.timeout);
}

absl::StatusOr<exportjobs::v1::BatchReportExportJobsResponse> WorkerClient::BatchReport(
    const exportjobs::v1::BatchReportExportJobsRequest& request, const CallControl& control) {
  return impl_->Unary(&WorkerService::Stub::BatchReportExportJobs, request, control,
                      options_.timeout);
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
