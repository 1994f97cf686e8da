// The C++ client library of exportd: typed wrappers over the generated stubs of ExportService
// (ExportClient) and WorkerService (WorkerClient). exportctl and export-worker use these and
// never the raw stubs.
//
// What every call gets:
//   - a deadline: CallOptions::timeout per unary call, shared by its tries (a claim: its wait
//     plus the timeout; an upload: the timeout plus one second per MiB; a stream: its own
//     timeout, see the methods). With CallOptions::timeout_per_try each try gets a deadline of
//     its own instead;
//   - the metadata in CallOptions::metadata (e.g. an authorization header), on every try;
//   - retries of transient failures: UNAVAILABLE (the server is unreachable, restarting or
//     draining) is retried with exponential backoff and jitter (RetryPolicy), never past the
//     call's deadline. Only calls that are safe to repeat are retried: reads, creates (made
//     idempotent by a request_id that Create fills in when the caller gave none), cancels,
//     deletes, and the worker calls fenced by a lease token. DEADLINE_EXCEEDED and every domain
//     error (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ABORTED, ...) are returned at
//     once, unless RetryPolicy::retryable_codes names them (export-worker also retries
//     DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED, with a deadline per try);
//   - errors as absl::Status with the gRPC code and the server's message unchanged.
//
// A CancelToken passed to a call cancels it (and its retries, and the backoff before them) from
// another thread: the call returns CANCELLED promptly.
//
// Creates are coalesced (CoalesceOptions): while a few create calls are in flight, further
// creates (Create, CreateAsync, CreateMany) wait and leave together in one BatchCreateExportJobs
// call when one of those calls is answered, so that many concurrent creates cost a few calls and
// share the server's group commits. A create made while fewer calls are in flight leaves at once,
// as its own CreateExportJob call. Each create keeps its own request_id, deadline, retries and
// result. Against a server without BatchCreateExportJobs (UNIMPLEMENTED), every create is its own
// CreateExportJob call from then on.
//
// Thread safety: ExportClient and WorkerClient are thread-safe; share one per process (calls
// share the channel's connection). CancelToken is thread-safe. Every call but CreateAsync blocks
// the calling thread until it is answered (the synchronous gRPC API); callbacks (on_event, sink,
// read, rewind) run on the calling thread. CreateAsync's callback runs on a gRPC thread (or the
// client's retry thread) and must not block.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "exportjobs/v1/export_job.pb.h"
#include "exportjobs/v1/export_service.pb.h"
#include "exportjobs/v1/worker_service.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"

namespace exportd::client {

// How transient failures are retried: the first retry after initial_backoff, each next one after
// twice the previous (at most max_backoff), each wait randomised by ±20%; at most max_attempts
// tries in all (1: no retries), and never when the wait would reach the call's deadline.
struct RetryPolicy {
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // The codes after which a retryable call is tried again. Add DEADLINE_EXCEEDED only together
  // with CallOptions::timeout_per_try (a shared deadline that passed leaves nothing to retry in).
  std::vector<absl::StatusCode> retryable_codes = {absl::StatusCode::kUnavailable};
};

struct CallOptions {
  // The deadline of each unary call: its tries share it (each gets what is left of it), unless
  // timeout_per_try.
  absl::Duration timeout = absl::Seconds(30);
  // Each try gets the whole timeout as its own deadline; the tries are then bounded by
  // RetryPolicy::max_attempts (and, for WorkerClient, CallControl::retry_until) alone.
  bool timeout_per_try = false;
  RetryPolicy retry;
  // Sent with every try of every call as `authorization: Bearer <token>` (export-server needs
  // one on every call; see docs/api.md). Empty: no authorization metadata.
  std::string token;
  // Sent with every try of every call, e.g. {"x-request-source", "nightly"}. Keys must be
  // lowercase (gRPC fails a call whose metadata key is not).
  std::vector<std::pair<std::string, std::string>> metadata;
};

// How ExportClient coalesces concurrent creates (see the file comment).
struct CoalesceOptions {
  // False: Create and CreateAsync make one CreateExportJob call per create (CreateMany still
  // sends its items in BatchCreateExportJobs calls).
  bool enabled = true;
  // Create calls in flight at once before further creates wait for the next batch. No timer: a
  // waiting create leaves as soon as one of those calls is answered.
  int max_calls_in_flight = 2;
  // Most creates in one BatchCreateExportJobs call (the server accepts --max_batch_creates, 1000
  // by default; a server that accepts fewer is followed, halving the batch until it does), and
  // most bytes of their requests (a larger request leaves alone).
  int max_batch_size = 500;
  int64_t max_batch_bytes = int64_t{1} << 20;
};

// TLS for a channel: PEM files. ca_file: the CA that signed the server's certificate (empty:
// the system's roots). cert_file and key_file: this client's certificate and key, for servers
// that require mutual TLS (both or neither).
struct TlsOptions {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // True when any file is named: the channel uses TLS.
  bool enabled() const { return !ca_file.empty() || !cert_file.empty() || !key_file.empty(); }
};

// Credentials for MakeChannel: TLS per `tls` when enabled(), else nullptr (plaintext).
// INVALID_ARGUMENT naming the option when a file cannot be read or only one of cert and key is
// given.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(const TlsOptions& tls);

// A channel to `target` ("host:port", or any gRPC target URI). With null credentials the channel
// is insecure (plaintext). The channel reconnects on its own (after 0.5 s, backing off to 5 s
// while the server stays away) and, while calls are open, sends a keepalive ping every 30 s
// (closing the connection when no answer comes within 20 s), also on a quiet stream.
// export-server accepts pings down to 10 s apart (--min_client_ping_interval). A server that
// keeps gRPC's default ping policy counts pings less than 5 minutes apart on a connection that
// sends no data as strikes, and answers the third with a GOAWAY "too_many_pings".
std::shared_ptr<grpc::Channel> MakeChannel(
    const std::string& target, std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

// The one mapping of a grpc::Status to absl::Status on the client side: same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

// Cancels the calls it is passed to, from any thread. Cancel() is sticky: a call started after it
// returns CANCELLED at once.
class CancelToken {
 public:
  CancelToken() = default;
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  // Cancels every registered call and wakes every SleepUnlessCancelled. Idempotent.
  void Cancel();
  bool cancelled() const;

  // For the library's calls: registers `context` while a try is in flight, so that Cancel()
  // reaches it. Returns false (and registers nothing) when already cancelled.
  bool Register(grpc::ClientContext* context);
  void Unregister(grpc::ClientContext* context);
  // Waits `duration` unless cancelled first; returns false when cancelled (at once when already).
  bool SleepUnlessCancelled(absl::Duration duration);

 private:
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<grpc::ClientContext*> contexts_ ABSL_GUARDED_BY(mu_);
};

// ExportService: create, read, watch and download export jobs.
class ExportClient {
 public:
  ExportClient(std::shared_ptr<grpc::Channel> channel, CallOptions options = {},
               CoalesceOptions coalesce = {});
  // Waits for the creates in flight to be answered (their callbacks run); creates still waiting
  // for a retry or a batch end CANCELLED.
  ~ExportClient();

  ExportClient(const ExportClient&) = delete;
  ExportClient& operator=(const ExportClient&) = delete;

  const CallOptions& options() const { return options_; }

  // CreateExportJob. When request.request_id is empty, one is generated before the first try
  // (32 hex digits: the time in microseconds, then 64 random bits, so that later ids sort later),
  // so that a retry after UNAVAILABLE can't create a second job; the returned job's request_id
  // tells which.
  // Coalesced with concurrent creates (CoalesceOptions) unless `cancel` is given: a cancellable
  // create is its own CreateExportJob call.
  absl::StatusOr<exportjobs::v1::ExportJob> Create(exportjobs::v1::CreateExportJobRequest request,
                                                   CancelToken* cancel = nullptr);

  using CreateCallback = absl::AnyInvocable<void(absl::StatusOr<exportjobs::v1::ExportJob>) &&>;
  // Create without waiting: `done` gets the result exactly once, with the same request_id,
  // deadline (from now), retries and errors as Create. It runs on a gRPC thread or the client's
  // retry thread (on the calling thread only when the result is known at once, e.g. a deadline
  // already passed). `done` must not block; it may call CreateAsync.
  void CreateAsync(exportjobs::v1::CreateExportJobRequest request, CreateCallback done);

  // Creates several jobs, each as Create would (its own request_id, generated when empty, its
  // own retries), sent together in BatchCreateExportJobs calls. Not atomic: one result per
  // request, in order; an error's message names the item ("requests[3].entity_type: ...").
  std::vector<absl::StatusOr<exportjobs::v1::ExportJob>> CreateMany(
      std::vector<exportjobs::v1::CreateExportJobRequest> requests);
  absl::StatusOr<exportjobs::v1::ExportJob> Get(std::string_view id, CancelToken* cancel = nullptr);
  absl::StatusOr<exportjobs::v1::ListExportJobsResponse> List(
      const exportjobs::v1::ListExportJobsRequest& request, CancelToken* cancel = nullptr);
  // CancelExportJob. A retry that finds the job already cancelled by the first try returns
  // the job, not FAILED_PRECONDITION.
  absl::StatusOr<exportjobs::v1::ExportJob> Cancel(std::string_view id,
                                                   CancelToken* cancel = nullptr);
  // DeleteExportJob. A retry that finds the job already gone (NOT_FOUND after a try whose
  // outcome is unknown) returns OK.
  absl::Status Delete(std::string_view id, CancelToken* cancel = nullptr);
  absl::StatusOr<std::vector<exportjobs::v1::ExportableField>> ListFields(
      exportjobs::v1::EntityType entity_type, CancelToken* cancel = nullptr);

  struct WatchOptions {
    // Resume after this revision (0: start with the current snapshot).
    int64_t since_revision = 0;
    // The deadline of the whole watch, across reconnects.
    absl::Duration timeout = absl::Hours(24);
    // Reconnects after a stream broke (UNAVAILABLE, or the server went away) without any event
    // arriving in between; each reconnect waits by options().retry's backoff. An event resets
    // the count.
    int max_reconnects = 10;
  };
  // Watches one job (WatchExportJob): calls on_event for each event in revision order, never
  // twice for the same revision. When the stream breaks with UNAVAILABLE (a restart, a drain, a
  // lost connection) it reconnects with since_revision = the last revision seen, so nothing is
  // missed and nothing repeated. Returns OK when the stream ends after the job's terminal state
  // or its deletion (the last event tells which), or when on_event returns false; otherwise the
  // error that ended the watch (NOT_FOUND, also for a job deleted while the watch reconnected;
  // DEADLINE_EXCEEDED; CANCELLED; UNAVAILABLE once the reconnects are used up or when the next
  // backoff would reach the deadline; ...). The stream's deadline is the whole watch's (it is
  // not a unary call: no CallOptions::timeout). on_event runs on the calling thread.
  absl::Status Watch(std::string_view id, const WatchOptions& watch,
                     const std::function<bool(const exportjobs::v1::ExportJobEvent&)>& on_event,
                     CancelToken* cancel = nullptr);

  // Watches every job matching `request` (WatchExportJobs) until on_event returns false, the
  // timeout passes (returns DEADLINE_EXCEEDED) or an error (RESOURCE_EXHAUSTED: the watcher fell
  // too far behind; reconcile with List); reconnects after UNAVAILABLE like Watch with the
  // default WatchOptions::max_reconnects (events between the break and the reconnect are not
  // replayed: the all-jobs stream has no resume point). Returns OK when on_event returns false
  // or the server ends the stream OK.
  absl::Status WatchAll(const exportjobs::v1::WatchExportJobsRequest& request,
                        absl::Duration timeout,
                        const std::function<bool(const exportjobs::v1::ExportJobEvent&)>& on_event,
                        CancelToken* cancel = nullptr);

  // Streams a completed job's file (part 0) or one part (from 1) over gRPC (DownloadExport):
  // calls sink with each chunk in order; a sink error stops the download and is returned. The
  // whole download has `timeout` as its deadline. Not retried (the sink has consumed bytes).
  absl::Status Download(std::string_view id, int part, absl::Duration timeout,
                        const std::function<absl::Status(std::string_view chunk)>& sink,
                        CancelToken* cancel = nullptr);

 private:
  class Impl;
  class Coalescer;
  const CallOptions options_;
  std::unique_ptr<Impl> impl_;
  // Destroyed before impl_ (its stub): waits for the creates in flight.
  std::unique_ptr<Coalescer> coalescer_;
  const bool coalesce_;
};

// Per-call settings of a WorkerClient call, beside its options().
struct CallControl {
  // Cancels the call, its retries and the backoff before them (see CancelToken). May be null.
  CancelToken* cancel = nullptr;
  // No retry is made whose backoff would end at or after this time (e.g. the end of the job's
  // lease, after which the job may be another worker's). Each try keeps its own deadline.
  absl::Time retry_until = absl::InfiniteFuture();
  // Most tries of this call; 0: options().retry.max_attempts.
  int max_attempts = 0;
  // Called on the calling thread before each retry's backoff with the failed try's status, the
  // number of that try (from 1) and the backoff, e.g. to log it. May be unset.
  std::function<void(const absl::Status& status, int attempt, absl::Duration backoff)> on_retry =
      nullptr;
};

// WorkerService: the internal protocol of export-worker. Every call is retried after the codes
// of options().retry.retryable_codes: the calls after a claim are fenced by the lease token, so
// a repeat can't change a job the worker no longer holds (ABORTED, the lease is lost, must not be
// among those codes).
class WorkerClient {
 public:
  WorkerClient(std::shared_ptr<grpc::Channel> channel, CallOptions options = {});
  ~WorkerClient();

  WorkerClient(const WorkerClient&) = delete;
  WorkerClient& operator=(const WorkerClient&) = delete;

  const CallOptions& options() const { return options_; }

  // ClaimExportJob; its deadline is request.wait plus options().timeout. An empty response (no
  // job) when the wait passed without one. Retried like every call (a claim the server granted
  // but whose answer was lost only costs that job a lease expiry).
  absl::StatusOr<exportjobs::v1::ClaimExportJobResponse> Claim(
      const exportjobs::v1::ClaimExportJobRequest& request, const CallControl& control = {});
  absl::StatusOr<exportjobs::v1::ReportProgressResponse> ReportProgress(
      const exportjobs::v1::ReportProgressRequest& request, const CallControl& control = {});

  // The largest data message Upload sends; longer chunks from `read` are split.
  static constexpr size_t kMaxChunkBytes = size_t{1} << 20;

  // One part to upload: the header, the bytes (`read` returns the next chunk, an empty string
  // at the end, or an error), and the trailer (size and SHA-256 of all bytes, computed by the
  // caller).
  struct PartUpload {
    exportjobs::v1::UploadExportPartRequest::Header header;
    exportjobs::v1::UploadExportPartRequest::Trailer trailer;
    std::function<absl::StatusOr<std::string>()> read;
    // Starts the reader over from the first byte; called before every retry. Unset: no retry.
    std::function<absl::Status()> rewind;
  };
  // UploadExportPart: streams the header, the chunks (in messages of at most kMaxChunkBytes)
  // and the trailer. The deadline (of the call, or of each try with timeout_per_try) is
  // options().timeout plus one second per MiB of trailer.size_bytes. Retried from the first
  // byte (after rewind) like every call. An error of `read` or `rewind` cancels the stream and
  // is returned as it is, without a retry.
  absl::StatusOr<exportjobs::v1::UploadExportPartResponse> Upload(const PartUpload& part,
                                                                  const CallControl& control = {});

  absl::StatusOr<exportjobs::v1::ExportJob> Complete(
      const exportjobs::v1::CompleteExportJobRequest& request, const CallControl& control = {});
  // BatchReportExportJobs: several progress reports and completions, and optionally a claim of
  // the next jobs (which never waits), in one call; each report's outcome is in its result.
  // Retried like every call: a retried completion whose first answer was lost comes back
  // ABORTED (the job is no longer processing), and jobs its first try claimed wait for their
  // lease to expire.
  absl::StatusOr<exportjobs::v1::BatchReportExportJobsResponse> BatchReport(
      const exportjobs::v1::BatchReportExportJobsRequest& request, const CallControl& control = {});
  absl::StatusOr<exportjobs::v1::ExportJob> Fail(
      const exportjobs::v1::FailExportJobRequest& request, const CallControl& control = {});
  absl::StatusOr<exportjobs::v1::ExportJob> Release(
      const exportjobs::v1::ReleaseExportJobRequest& request, const CallControl& control = {});

 private:
  class Impl;
  const CallOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace exportd::client
