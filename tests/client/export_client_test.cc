// ExportClient against a real in-process export-server over loopback gRPC: every method's answers
// and errors, and watch resume across a restart of the server on the same data directory. The
// failures a real server can't produce on demand (a lost answer, UNAVAILABLE on the n-th try, a
// call never answered, a stream broken after some events) come from FaultProxy, an ExportService
// of the test's own on a second port that forwards to the real server or follows a script, and
// records every call's metadata and request.
#include "client/export_client.h"

#include <openssl/sha.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/str_cat.h"
#include "exportjobs/v1/export_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/export_server.h"
#include "tests/server/test_server.h"
#include "tests/status_matchers.h"
#include "tests/support/grpc_timing.h"
#include "tests/support/temp_dir.h"

namespace exportd::client {
namespace {

using exportd::test_support::kGrpcDeadlineSlack;
using exportd::test_support::TempDir;
using exportd::testing::AccountsRequest;
using exportd::testing::IsOk;
using exportd::testing::StatusIs;
using exportd::testing::TestServer;
using exportjobs::v1::CreateExportJobRequest;
using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportJobEvent;
using exportjobs::v1::ExportService;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::SizeIs;

constexpr char kUnknownId[] = "00000000000000000000abcd";

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

// Options for tests: short backoff, so that retries take milliseconds.
CallOptions FastRetries(int max_attempts = 5) {
  CallOptions options;
  options.timeout = absl::Seconds(10);
  options.retry.max_attempts = max_attempts;
  options.retry.initial_backoff = absl::Milliseconds(5);
  options.retry.max_backoff = absl::Milliseconds(20);
  return options;
}

// Events of a watch, collected on the watching thread and awaited on the test's.
class EventLog {
 public:
  bool Add(const ExportJobEvent& event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
    return true;
  }

  // Waits (at most 30 s) until an event with at least `revision` arrived; false if none did.
  bool AwaitRevision(int64_t revision) {
    absl::MutexLock lock(&mu_);
    auto reached = [&] { return !events_.empty() && events_.back().revision() >= revision; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30));
  }

  std::vector<int64_t> Revisions() const {
    absl::MutexLock lock(&mu_);
    std::vector<int64_t> revisions;
    for (const ExportJobEvent& event : events_) revisions.push_back(event.revision());
    return revisions;
  }

  std::vector<ExportJobEvent> Events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<ExportJobEvent> events_ ABSL_GUARDED_BY(mu_);
};

// Completes `job` through the worker protocol with one part per string of `parts`.
absl::StatusOr<ExportJob> CompleteJob(WorkerClient& workers, const std::string& job_id,
                                      const std::vector<std::string>& parts) {
  exportjobs::v1::ClaimExportJobRequest claim;
  claim.set_worker_id("test-worker");
  claim.mutable_wait()->set_seconds(5);
  absl::StatusOr<exportjobs::v1::ClaimExportJobResponse> claimed = workers.Claim(claim);
  if (!claimed.ok()) return claimed.status();
  if (claimed->job().id() != job_id) {
    return absl::InternalError(Cat("claimed \"", claimed->job().id(), "\", not ", job_id));
  }
  exportjobs::v1::CompleteExportJobRequest complete;
  complete.set_job_id(job_id);
  complete.set_lease_token(claimed->lease().token());
  for (size_t i = 0; i < parts.size(); ++i) {
    WorkerClient::PartUpload upload;
    upload.header.set_job_id(job_id);
    upload.header.set_lease_token(claimed->lease().token());
    upload.header.set_part_number(static_cast<int32_t>(i + 1));
    upload.header.set_record_count(1);
    upload.trailer.set_size_bytes(static_cast<int64_t>(parts[i].size()));
    upload.trailer.set_sha256(Sha256Hex(parts[i]));
    bool sent = false;
    upload.read = [&]() -> absl::StatusOr<std::string> {
      if (sent) return std::string();
      sent = true;
      return parts[i];
    };
    absl::StatusOr<exportjobs::v1::UploadExportPartResponse> uploaded = workers.Upload(upload);
    if (!uploaded.ok()) return uploaded.status();
    *complete.add_parts() = uploaded->part();
  }
  complete.set_record_count(static_cast<int64_t>(parts.size()));
  return workers.Complete(complete);
}

// --- FaultProxy ----------------------------------------------------------------------------

// A unary call that is never answered: it ends when the client cancels it or its deadline
// passes.
class HangingReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override { Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")); }
  void OnDone() override { delete this; }
};

// A server stream that writes the given events, then ends with `end`.
class ScriptedStream final : public grpc::ServerWriteReactor<ExportJobEvent> {
 public:
  ScriptedStream(std::vector<ExportJobEvent> events, grpc::Status end)
      : events_(std::move(events)), end_(std::move(end)) {
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (next_ < events_.size()) return StartWrite(&events_[next_++]);
    Finish(end_);
  }
  std::vector<ExportJobEvent> events_;
  const grpc::Status end_;
  size_t next_ = 0;
};

class FaultProxy final : public ExportService::CallbackService {
 public:
  // What the proxy does with one call of a method (calls past the script are forwarded).
  // kHold: forwarded only at ReleaseHeld().
  enum class Action { kForward, kFailBefore, kFailAfter, kHang, kHold };
  struct Step {
    Action action = Action::kForward;
    grpc::StatusCode code = grpc::StatusCode::OK;
  };
  static Step FailBefore(grpc::StatusCode code) { return {Action::kFailBefore, code}; }
  static Step FailAfter(grpc::StatusCode code) { return {Action::kFailAfter, code}; }
  static Step Hang() { return {Action::kHang, grpc::StatusCode::OK}; }
  static Step Hold() { return {Action::kHold, grpc::StatusCode::OK}; }

  // One stream of a watch method: events, then the status it ends with.
  struct StreamScript {
    std::vector<ExportJobEvent> events;
    grpc::Status end;
  };

  struct Call {
    std::multimap<std::string, std::string> metadata;
    std::shared_ptr<google::protobuf::Message> request;
  };

  explicit FaultProxy(const std::string& backend)
      : backend_(ExportService::NewStub(testing::NewChannel(backend, 1000))) {
    grpc::ServerBuilder builder;
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    address_ = Cat("127.0.0.1:", port);
  }
  ~FaultProxy() override {
    ReleaseHeld();  // A held call left would keep Shutdown waiting for it.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  const std::string& address() const { return address_; }

  void Script(const std::string& method, std::vector<Step> steps) {
    absl::MutexLock lock(&mu_);
    for (const Step& step : steps) steps_[method].push_back(step);
  }
  void ScriptStreams(const std::string& method, std::vector<StreamScript> scripts) {
    absl::MutexLock lock(&mu_);
    for (StreamScript& script : scripts) streams_[method].push_back(std::move(script));
  }

  std::vector<Call> Calls(const std::string& method) const {
    absl::MutexLock lock(&mu_);
    auto found = calls_.find(method);
    return found == calls_.end() ? std::vector<Call>{} : found->second;
  }

  // Waits (at most 30 s) until `method` was called `count` times.
  bool AwaitCalls(const std::string& method, size_t count) const {
    absl::MutexLock lock(&mu_);
    auto reached = [&] {
      auto found = calls_.find(method);
      return found != calls_.end() && found->second.size() >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30));
  }

  grpc::ServerUnaryReactor* CreateExportJob(grpc::CallbackServerContext* context,
                                            const CreateExportJobRequest* request,
                                            ExportJob* response) override {
    return Unary(context, "Create", request, response,
                 [this](auto... args) { backend_->async()->CreateExportJob(args...); });
  }
  grpc::ServerUnaryReactor* BatchCreateExportJobs(
      grpc::CallbackServerContext* context,
      const exportjobs::v1::BatchCreateExportJobsRequest* request,
      exportjobs::v1::BatchCreateExportJobsResponse* response) override {
    return Unary(context, "Batch", request, response,
                 [this](auto... args) { backend_->async()->BatchCreateExportJobs(args...); });
  }
  // Waits (at most 30 s) until `count` calls are held (Step Hold).
  bool AwaitHeld(size_t count) const {
    absl::MutexLock lock(&mu_);
    auto reached = [&] { return held_.size() >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30));
  }
  // Forwards the calls held so far (Step Hold).
  void ReleaseHeld() {
    std::vector<std::function<void()>> held;
    {
      absl::MutexLock lock(&mu_);
      held.swap(held_);
    }
    for (auto& forward : held) forward();
  }
  grpc::ServerUnaryReactor* GetExportJob(grpc::CallbackServerContext* context,
                                         const exportjobs::v1::GetExportJobRequest* request,
                                         ExportJob* response) override {
    return Unary(context, "Get", request, response,
                 [this](auto... args) { backend_->async()->GetExportJob(args...); });
  }
  grpc::ServerUnaryReactor* ListExportJobs(
      grpc::CallbackServerContext* context, const exportjobs::v1::ListExportJobsRequest* request,
      exportjobs::v1::ListExportJobsResponse* response) override {
    return Unary(context, "List", request, response,
                 [this](auto... args) { backend_->async()->ListExportJobs(args...); });
  }
  grpc::ServerUnaryReactor* CancelExportJob(grpc::CallbackServerContext* context,
                                            const exportjobs::v1::CancelExportJobRequest* request,
                                            ExportJob* response) override {
    return Unary(context, "Cancel", request, response,
                 [this](auto... args) { backend_->async()->CancelExportJob(args...); });
  }
  grpc::ServerUnaryReactor* DeleteExportJob(grpc::CallbackServerContext* context,
                                            const exportjobs::v1::DeleteExportJobRequest* request,
                                            google::protobuf::Empty* response) override {
    return Unary(context, "Delete", request, response,
                 [this](auto... args) { backend_->async()->DeleteExportJob(args...); });
  }
  grpc::ServerUnaryReactor* ListExportableFields(
      grpc::CallbackServerContext* context,
      const exportjobs::v1::ListExportableFieldsRequest* request,
      exportjobs::v1::ListExportableFieldsResponse* response) override {
    return Unary(context, "ListFields", request, response,
                 [this](auto... args) { backend_->async()->ListExportableFields(args...); });
  }
  grpc::ServerWriteReactor<ExportJobEvent>* WatchExportJob(
      grpc::CallbackServerContext* context,
      const exportjobs::v1::WatchExportJobRequest* request) override {
    return Stream(context, "Watch", *request);
  }
  grpc::ServerWriteReactor<ExportJobEvent>* WatchExportJobs(
      grpc::CallbackServerContext* context,
      const exportjobs::v1::WatchExportJobsRequest* request) override {
    return Stream(context, "WatchAll", *request);
  }

 private:
  // Records the call and returns what to do with it.
  Step Record(const std::string& method, const grpc::CallbackServerContext* context,
              const google::protobuf::Message& request) {
    Call call;
    for (const auto& [key, value] : context->client_metadata()) {
      call.metadata.emplace(std::string(key.data(), key.size()),
                            std::string(value.data(), value.size()));
    }
    call.request.reset(request.New());
    call.request->CopyFrom(request);
    absl::MutexLock lock(&mu_);
    calls_[method].push_back(std::move(call));
    std::deque<Step>& steps = steps_[method];
    if (steps.empty()) return Step{};
    const Step step = steps.front();
    steps.pop_front();
    return step;
  }

  template <typename Request, typename Response, typename Forward>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, const std::string& method,
                                  const Request* request, Response* response, Forward forward) {
    const Step step = Record(method, context, *request);
    if (step.action == Action::kHang) return new HangingReactor();
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (step.action == Action::kFailBefore) {
      reactor->Finish(grpc::Status(step.code, "injected before forwarding"));
      return reactor;
    }
    auto send = [forward, request, response, reactor, step]() mutable {
      auto* forwarded = new grpc::ClientContext();
      forwarded->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      forward(forwarded, request, response,
              std::function<void(grpc::Status)>([reactor, forwarded, step](grpc::Status status) {
                delete forwarded;
                if (step.action == Action::kFailAfter) {
                  status = grpc::Status(step.code, "injected after forwarding");
                }
                reactor->Finish(status);
              }));
    };
    if (step.action == Action::kHold) {
      absl::MutexLock lock(&mu_);
      held_.push_back(std::move(send));
      return reactor;
    }
    send();
    return reactor;
  }

  grpc::ServerWriteReactor<ExportJobEvent>* Stream(grpc::CallbackServerContext* context,
                                                   const std::string& method,
                                                   const google::protobuf::Message& request) {
    Record(method, context, request);
    StreamScript script{{}, grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no script left")};
    {
      absl::MutexLock lock(&mu_);
      std::deque<StreamScript>& scripts = streams_[method];
      if (!scripts.empty()) {
        script = std::move(scripts.front());
        scripts.pop_front();
      }
    }
    return new ScriptedStream(std::move(script.events), std::move(script.end));
  }

  const std::unique_ptr<ExportService::Stub> backend_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::deque<Step>> steps_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::deque<StreamScript>> streams_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<Call>> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> held_ ABSL_GUARDED_BY(mu_);
};

ExportJobEvent Event(const std::string& id, int64_t revision,
                     exportjobs::v1::ExportJobStatus status,
                     ExportJobEvent::Kind kind = ExportJobEvent::KIND_CHANGED) {
  ExportJobEvent event;
  event.mutable_job()->set_id(id);
  event.mutable_job()->set_revision(revision);
  event.mutable_job()->set_status(status);
  event.set_revision(revision);
  event.set_kind(kind);
  return event;
}

// --- The real server -----------------------------------------------------------------------

class ExportClientTest : public ::testing::Test {
 protected:
  ExportClientTest()
      : client_(MakeChannel(server_.address()), FastRetries()),
        workers_(MakeChannel(server_.address()), FastRetries()) {}

  ExportJob MustCreate(CreateExportJobRequest request = AccountsRequest()) {
    absl::StatusOr<ExportJob> job = client_.Create(std::move(request));
    EXPECT_OK(job);
    return job.ok() ? *job : ExportJob();
  }

  TestServer server_;
  ExportClient client_;
  WorkerClient workers_;
};

// --- Tokens and TLS options ---

TEST(ClientAuthTest, TheTokenOfCallOptionsGoesWithEveryCallAndStream) {
  ServerOptions options;
  absl::StatusOr<TokenTable> table = TokenTable::Parse(
      "client-token-000000001 ui acme client\nworker-token-000000001 w ops worker\n");
  ASSERT_OK(table.status());
  options.auth = Authenticator::FromTable(*std::move(table));
  TestServer server(options);

  CallOptions with_token = FastRetries();
  with_token.token = "client-token-000000001";
  ExportClient client(MakeChannel(server.address()), with_token);
  absl::StatusOr<ExportJob> job = client.Create(AccountsRequest());
  ASSERT_OK(job);
  EXPECT_OK(client.Get(job->id()));
  ASSERT_OK(client.Cancel(job->id()));
  // A stream carries it too: the watch sees the cancelled job and ends.
  int events = 0;
  EXPECT_OK(client.Watch(job->id(), {}, [&](const ExportJobEvent&) {
    ++events;
    return true;
  }));
  EXPECT_GE(events, 1);

  ExportClient anonymous(MakeChannel(server.address()), FastRetries());
  EXPECT_THAT(anonymous.Get(job->id()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("authorization")));
  // Not retried: UNAUTHENTICATED is not transient.
  EXPECT_THAT(anonymous.Watch(job->id(), {}, [](const ExportJobEvent&) { return true; }),
              StatusIs(absl::StatusCode::kUnauthenticated));

  CallOptions worker_token = FastRetries();
  worker_token.token = "worker-token-000000001";
  WorkerClient worker(MakeChannel(server.address()), worker_token);
  exportjobs::v1::ClaimExportJobRequest claim;
  claim.set_worker_id("w1");
  EXPECT_OK(worker.Claim(claim));  // Nothing pending: an empty answer.
  WorkerClient client_as_worker(MakeChannel(server.address()), with_token);
  EXPECT_THAT(client_as_worker.Claim(claim),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("role client")));
}

TEST(ClientAuthTest, MakeCredentialsChecksItsFiles) {
  TempDir dir;
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> plaintext = MakeCredentials({});
  ASSERT_OK(plaintext);
  EXPECT_EQ(*plaintext, nullptr);
  TlsOptions missing_ca;
  missing_ca.ca_file = dir.path() + "/missing-ca.pem";
  EXPECT_THAT(MakeCredentials(missing_ca),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls_ca: cannot read")));
  TlsOptions cert_alone;
  cert_alone.cert_file = dir.path() + "/c.pem";
  EXPECT_THAT(MakeCredentials(cert_alone),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("give both or neither")));
}

TEST_F(ExportClientTest, CreateGetListCancelDelete) {
  ASSERT_OK_AND_ASSIGN(ExportJob created, client_.Create(AccountsRequest()));
  EXPECT_EQ(created.status(), exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  EXPECT_EQ(created.revision(), 1);
  // No request_id given: one was generated, so that retries are idempotent.
  EXPECT_THAT(created.request_id(), MatchesRegex("[0-9a-f]{32}"));

  ASSERT_OK_AND_ASSIGN(ExportJob got, client_.Get(created.id()));
  EXPECT_EQ(got.id(), created.id());
  EXPECT_EQ(got.revision(), 1);

  const ExportJob second = MustCreate();
  ASSERT_OK_AND_ASSIGN(exportjobs::v1::ListExportJobsResponse listed, client_.List({}));
  ASSERT_THAT(listed.jobs(), SizeIs(2));
  EXPECT_EQ(listed.jobs(0).id(), second.id());  // Newest first.
  EXPECT_EQ(listed.jobs(1).id(), created.id());

  ASSERT_OK_AND_ASSIGN(ExportJob cancelled, client_.Cancel(created.id()));
  EXPECT_EQ(cancelled.status(), exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  EXPECT_OK(client_.Delete(created.id()));
  EXPECT_THAT(client_.Get(created.id()), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ExportClientTest, CreateKeepsTheCallersRequestId) {
  CreateExportJobRequest request = AccountsRequest();
  request.set_request_id("order-42");
  ASSERT_OK_AND_ASSIGN(ExportJob first, client_.Create(request));
  ASSERT_OK_AND_ASSIGN(ExportJob again, client_.Create(request));
  EXPECT_EQ(first.request_id(), "order-42");
  EXPECT_EQ(again.id(), first.id());

  CreateExportJobRequest other = AccountsRequest(exportjobs::v1::ENTITY_TYPE_PEOPLE);
  other.set_request_id("order-42");
  EXPECT_THAT(client_.Create(other), StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST_F(ExportClientTest, ErrorsCarryTheServersCodeAndMessage) {
  CreateExportJobRequest no_entity;
  EXPECT_THAT(client_.Create(no_entity),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("entity_type")));
  EXPECT_THAT(client_.Get(kUnknownId),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(kUnknownId)));
  EXPECT_THAT(client_.Get("not-an-id"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a job id")));
  EXPECT_THAT(client_.Cancel(kUnknownId), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(client_.Delete(kUnknownId), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(client_.ListFields(exportjobs::v1::ENTITY_TYPE_UNSPECIFIED),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("entity_type")));
  exportjobs::v1::ListExportJobsRequest bad_page;
  bad_page.set_page_token("garbage");
  EXPECT_THAT(client_.List(bad_page),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));

  const ExportJob pending = MustCreate();
  EXPECT_THAT(client_.Delete(pending.id()), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(client_.Cancel(pending.id()));
  // Cancel of a terminal job on the first try is the server's answer.
  EXPECT_THAT(client_.Cancel(pending.id()), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(ExportClientTest, ListFieldsInCatalogOrder) {
  ASSERT_OK_AND_ASSIGN(std::vector<exportjobs::v1::ExportableField> fields,
                       client_.ListFields(exportjobs::v1::ENTITY_TYPE_ACCOUNTS));
  ASSERT_THAT(fields, Not(IsEmpty()));
  bool has_name = false;
  for (const auto& field : fields) has_name |= field.name() == "name";
  EXPECT_TRUE(has_name);
}

TEST_F(ExportClientTest, WatchDeliversEveryRevisionAndEndsAfterTheTerminalState) {
  const ExportJob job = MustCreate();
  EventLog log;
  absl::Status watched;
  std::thread watcher([&] {
    watched = client_.Watch(job.id(), {}, [&](const ExportJobEvent& e) { return log.Add(e); });
  });
  ASSERT_TRUE(log.AwaitRevision(1));
  ASSERT_OK(client_.Cancel(job.id()));
  watcher.join();
  EXPECT_OK(watched);
  const std::vector<ExportJobEvent> events = log.Events();
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[0].kind(), ExportJobEvent::KIND_SNAPSHOT);
  EXPECT_EQ(events[0].revision(), 1);
  EXPECT_EQ(events[1].revision(), 2);
  EXPECT_EQ(events[1].job().status(), exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);

  // Resuming after revision 1 replays revision 2 alone.
  EventLog resumed;
  ExportClient::WatchOptions since_1;
  since_1.since_revision = 1;
  EXPECT_OK(
      client_.Watch(job.id(), since_1, [&](const ExportJobEvent& e) { return resumed.Add(e); }));
  EXPECT_THAT(resumed.Revisions(), ElementsAre(2));
}

TEST_F(ExportClientTest, WatchStopsWhenOnEventSaysSo) {
  const ExportJob job = MustCreate();
  int calls = 0;
  EXPECT_OK(client_.Watch(job.id(), {}, [&](const ExportJobEvent&) {
    ++calls;
    return false;
  }));
  EXPECT_EQ(calls, 1);
}

TEST_F(ExportClientTest, WatchErrors) {
  auto ignore = [](const ExportJobEvent&) { return true; };
  EXPECT_THAT(client_.Watch(kUnknownId, {}, ignore), StatusIs(absl::StatusCode::kNotFound));
  const ExportJob job = MustCreate();
  ExportClient::WatchOptions ahead;
  ahead.since_revision = 7;
  EXPECT_THAT(client_.Watch(job.id(), ahead, ignore),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("since_revision")));
}

TEST_F(ExportClientTest, WatchEndsAtItsDeadline) {
  const ExportJob job = MustCreate();
  EventLog log;
  ExportClient::WatchOptions short_watch;
  short_watch.timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  EXPECT_THAT(
      client_.Watch(job.id(), short_watch, [&](const ExportJobEvent& e) { return log.Add(e); }),
      StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300) - kGrpcDeadlineSlack);
  EXPECT_THAT(log.Revisions(), ElementsAre(1));
}

TEST_F(ExportClientTest, CancelTokenEndsAWatchPromptly) {
  const ExportJob job = MustCreate();
  EventLog log;
  CancelToken cancel;
  absl::Status watched;
  std::thread watcher([&] {
    watched = client_.Watch(
        job.id(), {}, [&](const ExportJobEvent& e) { return log.Add(e); }, &cancel);
  });
  ASSERT_TRUE(log.AwaitRevision(1));  // The stream is open.
  const absl::Time start = absl::Now();
  cancel.Cancel();
  watcher.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_THAT(watched, StatusIs(absl::StatusCode::kCancelled));
  // Cancel is sticky: a call made with the token afterwards does not start.
  EXPECT_THAT(client_.Get(job.id(), &cancel), StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(ExportClientTest, WatchAllSeesChangesMatchingItsFilter) {
  exportjobs::v1::WatchExportJobsRequest cancelled_only;
  cancelled_only.set_status(exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  EventLog log;
  absl::Notification seen;
  absl::Status watched;
  std::thread watcher([&] {
    watched = client_.WatchAll(cancelled_only, absl::Seconds(30), [&](const ExportJobEvent& e) {
      log.Add(e);
      seen.Notify();
      return false;
    });
  });
  // The watch registers at some point after the call starts: cancel fresh jobs until it sees
  // one (each loop waits for the watcher, not for time).
  std::vector<std::string> cancelled;
  while (!seen.HasBeenNotified() && cancelled.size() < 100) {
    const ExportJob pending = MustCreate();  // Pending: filtered out.
    ASSERT_OK(client_.Cancel(pending.id()));
    cancelled.push_back(pending.id());
    seen.WaitForNotificationWithTimeout(absl::Milliseconds(100));
  }
  watcher.join();
  EXPECT_OK(watched);
  const std::vector<ExportJobEvent> events = log.Events();
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].job().status(), exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  EXPECT_THAT(cancelled, ::testing::Contains(events[0].job().id()));
}

TEST_F(ExportClientTest, WatchAllEndsAtItsDeadline) {
  exportjobs::v1::WatchExportJobsRequest all;
  EXPECT_THAT(
      client_.WatchAll(all, absl::Milliseconds(200), [](const ExportJobEvent&) { return true; }),
      StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_F(ExportClientTest, DownloadStreamsTheFileOrOnePart) {
  const ExportJob job = MustCreate();
  ASSERT_OK_AND_ASSIGN(ExportJob completed,
                       CompleteJob(workers_, job.id(), {"id,name\r\n1,Acme\r\n", "2,Initech\r\n"}));
  ASSERT_EQ(completed.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);

  std::string file;
  EXPECT_OK(client_.Download(job.id(), 0, absl::Seconds(10), [&](std::string_view chunk) {
    file.append(chunk);
    return absl::OkStatus();
  }));
  EXPECT_EQ(file, "id,name\r\n1,Acme\r\n2,Initech\r\n");
  std::string part2;
  EXPECT_OK(client_.Download(job.id(), 2, absl::Seconds(10), [&](std::string_view chunk) {
    part2.append(chunk);
    return absl::OkStatus();
  }));
  EXPECT_EQ(part2, "2,Initech\r\n");

  // A sink error stops the download and is what it returns.
  EXPECT_THAT(client_.Download(job.id(), 0, absl::Seconds(10),
                               [](std::string_view) { return absl::DataLossError("disk full"); }),
              StatusIs(absl::StatusCode::kDataLoss, "disk full"));
}

TEST_F(ExportClientTest, DownloadErrors) {
  auto sink = [](std::string_view) { return absl::OkStatus(); };
  EXPECT_THAT(client_.Download(kUnknownId, 0, absl::Seconds(10), sink),
              StatusIs(absl::StatusCode::kNotFound));
  const ExportJob pending = MustCreate();
  EXPECT_THAT(client_.Download(pending.id(), 0, absl::Seconds(10), sink),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(client_.Download(pending.id(), -1, absl::Seconds(10), sink),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("part")));
}

// --- Faults --------------------------------------------------------------------------------

class ExportClientFaultTest : public ::testing::Test {
 protected:
  explicit ExportClientFaultTest(CallOptions options = FastRetries())
      : proxy_(server_.address()), client_(MakeChannel(proxy_.address()), std::move(options)) {}

  TestServer server_;
  FaultProxy proxy_;
  ExportClient client_;
};

TEST_F(ExportClientFaultTest, CreateWhoseAnswerWasLostIsRetriedIntoTheSameJob) {
  // The first try creates the job, but its answer is lost.
  proxy_.Script("Create", {FaultProxy::FailAfter(grpc::StatusCode::UNAVAILABLE)});
  ASSERT_OK_AND_ASSIGN(ExportJob job, client_.Create(AccountsRequest()));

  const std::vector<FaultProxy::Call> calls = proxy_.Calls("Create");
  ASSERT_THAT(calls, SizeIs(2));
  const auto& first = static_cast<const CreateExportJobRequest&>(*calls[0].request);
  const auto& second = static_cast<const CreateExportJobRequest&>(*calls[1].request);
  EXPECT_THAT(first.request_id(), MatchesRegex("[0-9a-f]{32}"));
  EXPECT_EQ(second.request_id(), first.request_id());
  EXPECT_EQ(job.request_id(), first.request_id());
  // One job on the server, the one returned.
  exportjobs::v1::ListExportJobsResponse listed;
  ASSERT_TRUE(server_.List({}, &listed).ok());
  ASSERT_THAT(listed.jobs(), SizeIs(1));
  EXPECT_EQ(listed.jobs(0).id(), job.id());
}

TEST_F(ExportClientFaultTest, UnavailableIsRetriedUntilTheCallGetsThrough) {
  const ExportJob job = [&] {
    ExportJob created;
    EXPECT_TRUE(server_.Create(AccountsRequest(), &created).ok());
    return created;
  }();
  proxy_.Script("Get", {FaultProxy::FailBefore(grpc::StatusCode::UNAVAILABLE),
                        FaultProxy::FailBefore(grpc::StatusCode::UNAVAILABLE)});
  ASSERT_OK_AND_ASSIGN(ExportJob got, client_.Get(job.id()));
  EXPECT_EQ(got.id(), job.id());
  EXPECT_THAT(proxy_.Calls("Get"), SizeIs(3));

  proxy_.Script("ListFields", {FaultProxy::FailBefore(grpc::StatusCode::UNAVAILABLE)});
  EXPECT_OK(client_.ListFields(exportjobs::v1::ENTITY_TYPE_PEOPLE));
  EXPECT_THAT(proxy_.Calls("ListFields"), SizeIs(2));
  proxy_.Script("List", {FaultProxy::FailBefore(grpc::StatusCode::UNAVAILABLE)});
  EXPECT_OK(client_.List({}));
  EXPECT_THAT(proxy_.Calls("List"), SizeIs(2));
}

TEST_F(ExportClientFaultTest, RetriesStopAfterMaxAttempts) {
  std::vector<FaultProxy::Step> always(10, FaultProxy::FailBefore(grpc::StatusCode::UNAVAILABLE));
  proxy_.Script("Get", always);
  EXPECT_THAT(client_.Get(kUnknownId),
              StatusIs(absl::StatusCode::kUnavailable, "injected before forwarding"));
  EXPECT_THAT(proxy_.Calls("Get"), SizeIs(5));  // FastRetries: 5 tries.
}

TEST_F(ExportClientFaultTest, OtherCodesAreReturnedAtOnce) {
  proxy_.Script("Get", {FaultProxy::FailBefore(grpc::StatusCode::DEADLINE_EXCEEDED)});
  EXPECT_THAT(client_.Get(kUnknownId), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(proxy_.Calls("Get"), SizeIs(1));
  proxy_.Script("Get", {FaultProxy::FailBefore(grpc::StatusCode::RESOURCE_EXHAUSTED)});
  EXPECT_THAT(client_.Get(kUnknownId), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(proxy_.Calls("Get"), SizeIs(2));
  // The real server's NOT_FOUND.
  EXPECT_THAT(client_.Get(kUnknownId), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(proxy_.Calls("Get"), SizeIs(3));
}

TEST_F(ExportClientFaultTest, CancelRetryThatFindsTheJobCancelledReturnsIt) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  // The first try cancels the job, but its answer is lost; the retry is FAILED_PRECONDITION.
  proxy_.Script("Cancel", {FaultProxy::FailAfter(grpc::StatusCode::UNAVAILABLE)});
  ASSERT_OK_AND_ASSIGN(ExportJob cancelled, client_.Cancel(job.id()));
  EXPECT_EQ(cancelled.id(), job.id());
  EXPECT_EQ(cancelled.status(), exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  EXPECT_THAT(proxy_.Calls("Cancel"), SizeIs(2));
}

TEST_F(ExportClientFaultTest, DeleteRetryThatFindsTheJobGoneIsOk) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  ASSERT_TRUE(server_.Cancel(job.id(), &job).ok());
  proxy_.Script("Delete", {FaultProxy::FailAfter(grpc::StatusCode::UNAVAILABLE)});
  EXPECT_OK(client_.Delete(job.id()));
  EXPECT_THAT(proxy_.Calls("Delete"), SizeIs(2));
  ExportJob gone;
  EXPECT_EQ(server_.Get(job.id(), &gone).error_code(), grpc::StatusCode::NOT_FOUND);
  // Without an unknown outcome before it, NOT_FOUND is the answer.
  EXPECT_THAT(client_.Delete(job.id()), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ExportClientFaultTest, EveryTryCarriesTheMetadata) {
  CallOptions options = FastRetries();
  options.metadata = {{"authorization", "Bearer secret"}, {"x-exportd-caller", "tests"}};
  ExportClient client(MakeChannel(proxy_.address()), options);
  proxy_.Script("Get", {FaultProxy::FailBefore(grpc::StatusCode::UNAVAILABLE)});
  EXPECT_THAT(client.Get(kUnknownId), StatusIs(absl::StatusCode::kNotFound));
  proxy_.ScriptStreams("Watch", {{{}, grpc::Status(grpc::StatusCode::NOT_FOUND, "gone")}});
  EXPECT_THAT(client.Watch(kUnknownId, {}, [](const ExportJobEvent&) { return true; }),
              StatusIs(absl::StatusCode::kNotFound));

  std::vector<FaultProxy::Call> calls = proxy_.Calls("Get");
  ASSERT_THAT(calls, SizeIs(2));
  calls.push_back(proxy_.Calls("Watch").at(0));
  for (const FaultProxy::Call& call : calls) {
    EXPECT_EQ(call.metadata.count("authorization"), 1u);
    EXPECT_EQ(call.metadata.find("authorization")->second, "Bearer secret");
    EXPECT_EQ(call.metadata.find("x-exportd-caller")->second, "tests");
  }
}

TEST_F(ExportClientFaultTest, TriesShareTheCallsDeadline) {
  CallOptions options = FastRetries();
  options.timeout = absl::Milliseconds(300);
  ExportClient client(MakeChannel(proxy_.address()), options);
  proxy_.Script("Get", {FaultProxy::Hang()});
  const absl::Time start = absl::Now();
  EXPECT_THAT(client.Get(kUnknownId), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300) - kGrpcDeadlineSlack);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_THAT(proxy_.Calls("Get"), SizeIs(1));

  // A backoff that would reach the deadline is not waited: the error is returned.
  options.retry.initial_backoff = absl::Seconds(1);
  ExportClient slow_retries(MakeChannel(proxy_.address()), options);
  proxy_.Script("Get", {FaultProxy::FailBefore(grpc::StatusCode::UNAVAILABLE)});
  EXPECT_THAT(slow_retries.Get(kUnknownId), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(proxy_.Calls("Get"), SizeIs(2));
}

TEST_F(ExportClientFaultTest, CancelTokenEndsACallInFlightOrInBackoff) {
  proxy_.Script("Get", {FaultProxy::Hang()});
  CancelToken hung;
  absl::Status got;
  std::thread caller([&] { got = client_.Get(kUnknownId, &hung).status(); });
  ASSERT_TRUE(proxy_.AwaitCalls("Get", 1));
  absl::Time start = absl::Now();
  hung.Cancel();
  caller.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kCancelled));

  // In the backoff between tries.
  CallOptions options = FastRetries();
  options.timeout = absl::Seconds(60);
  options.retry.initial_backoff = absl::Seconds(30);
  options.retry.max_backoff = absl::Seconds(30);
  ExportClient slow_retries(MakeChannel(proxy_.address()), options);
  proxy_.Script("Get", {FaultProxy::FailBefore(grpc::StatusCode::UNAVAILABLE)});
  CancelToken backing_off;
  std::thread retrier([&] { got = slow_retries.Get(kUnknownId, &backing_off).status(); });
  ASSERT_TRUE(proxy_.AwaitCalls("Get", 2));
  start = absl::Now();
  backing_off.Cancel();
  retrier.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(proxy_.Calls("Get"), SizeIs(2));
}

TEST_F(ExportClientFaultTest, WatchResumesAfterTheLastRevisionAndSkipsRepeats) {
  const std::string id = "0000000000000000000000aa";
  using exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED;
  using exportjobs::v1::EXPORT_JOB_STATUS_PENDING;
  using exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING;
  proxy_.ScriptStreams(
      "Watch",
      {{{Event(id, 1, EXPORT_JOB_STATUS_PENDING, ExportJobEvent::KIND_SNAPSHOT),
         Event(id, 2, EXPORT_JOB_STATUS_PROCESSING)},
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down")},
       // A server that resends revision 2 after the reconnect.
       {{Event(id, 2, EXPORT_JOB_STATUS_PROCESSING), Event(id, 3, EXPORT_JOB_STATUS_COMPLETED)},
        grpc::Status::OK}});
  EventLog log;
  EXPECT_OK(client_.Watch(id, {}, [&](const ExportJobEvent& e) { return log.Add(e); }));
  EXPECT_THAT(log.Revisions(), ElementsAre(1, 2, 3));
  const std::vector<FaultProxy::Call> calls = proxy_.Calls("Watch");
  ASSERT_THAT(calls, SizeIs(2));
  EXPECT_EQ(
      static_cast<const exportjobs::v1::WatchExportJobRequest&>(*calls[0].request).since_revision(),
      0);
  EXPECT_EQ(
      static_cast<const exportjobs::v1::WatchExportJobRequest&>(*calls[1].request).since_revision(),
      2);
}

TEST_F(ExportClientFaultTest, WatchGivesUpAfterMaxReconnectsWithoutEvents) {
  const grpc::Status unavailable(grpc::StatusCode::UNAVAILABLE, "down");
  proxy_.ScriptStreams("Watch", {{{}, unavailable}, {{}, unavailable}, {{}, unavailable}});
  ExportClient::WatchOptions watch;
  watch.max_reconnects = 2;
  EXPECT_THAT(client_.Watch(kUnknownId, watch, [](const ExportJobEvent&) { return true; }),
              StatusIs(absl::StatusCode::kUnavailable, "down"));
  EXPECT_THAT(proxy_.Calls("Watch"), SizeIs(3));

  // Other codes end the watch at once.
  proxy_.ScriptStreams("Watch", {{{}, grpc::Status(grpc::StatusCode::INTERNAL, "broken")}});
  EXPECT_THAT(client_.Watch(kUnknownId, watch, [](const ExportJobEvent&) { return true; }),
              StatusIs(absl::StatusCode::kInternal, "broken"));
  EXPECT_THAT(proxy_.Calls("Watch"), SizeIs(4));
}

TEST_F(ExportClientFaultTest, WatchAllReconnectsAfterUnavailable) {
  const std::string a = "0000000000000000000000aa";
  const std::string b = "0000000000000000000000bb";
  proxy_.ScriptStreams(
      "WatchAll", {{{Event(a, 1, exportjobs::v1::EXPORT_JOB_STATUS_PENDING)},
                    grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down")},
                   {{Event(b, 1, exportjobs::v1::EXPORT_JOB_STATUS_PENDING)}, grpc::Status::OK}});
  EventLog log;
  EXPECT_OK(
      client_.WatchAll({}, absl::Seconds(10), [&](const ExportJobEvent& e) { return log.Add(e); }));
  const std::vector<ExportJobEvent> events = log.Events();
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[0].job().id(), a);
  EXPECT_EQ(events[1].job().id(), b);
  EXPECT_THAT(proxy_.Calls("WatchAll"), SizeIs(2));
}

// --- Restart -------------------------------------------------------------------------------

// A watch that spans a restart of the server on the same data directory and port sees every
// revision once: those before the restart live, those made while it was reconnecting replayed.
TEST(ExportClientRestartTest, WatchResumesAcrossAServerRestart) {
  TempDir data_dir;
  ServerOptions options;
  options.insecure_no_auth = true;
  options.data_dir = data_dir.path();
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "127.0.0.1:0";
  options.shutdown_grace = absl::Seconds(5);
  options.progress_interval = absl::ZeroDuration();
  options.jobs.lease_duration = absl::Seconds(60);  // The lease outlives the restart.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ExportServer> server, ExportServer::Start(options));
  const std::string address = server->grpc_address();
  options.grpc_address = address;  // The restart listens where the clients connect.

  ExportClient client(MakeChannel(address), FastRetries());
  ASSERT_OK_AND_ASSIGN(ExportJob job, client.Create(AccountsRequest()));
  EventLog log;
  absl::Status watched;
  ExportClient::WatchOptions watch;
  watch.max_reconnects = 100;
  std::thread watcher([&] {
    watched = client.Watch(job.id(), watch, [&](const ExportJobEvent& e) { return log.Add(e); });
  });
  ASSERT_TRUE(log.AwaitRevision(1));
  exportjobs::v1::ClaimExportJobRequest claim;
  claim.set_worker_id("w");
  std::string token;
  {
    WorkerClient workers(testing::NewChannel(address, 1), FastRetries());
    ASSERT_OK_AND_ASSIGN(exportjobs::v1::ClaimExportJobResponse claimed, workers.Claim(claim));
    ASSERT_EQ(claimed.job().id(), job.id());
    token = claimed.lease().token();
  }
  ASSERT_TRUE(log.AwaitRevision(2));

  server->Shutdown();  // Watch streams end UNAVAILABLE; the watch reconnects.
  server.reset();
  ASSERT_OK_AND_ASSIGN(server, ExportServer::Start(options));
  {
    // Revisions 3 to 5, made while the watch may still be reconnecting.
    WorkerClient workers(testing::NewChannel(address, 2), FastRetries());
    exportjobs::v1::ReleaseExportJobRequest release;
    release.set_job_id(job.id());
    release.set_lease_token(token);
    ASSERT_OK(workers.Release(release));
    ASSERT_OK_AND_ASSIGN(exportjobs::v1::ClaimExportJobResponse again, workers.Claim(claim));
    ASSERT_EQ(again.job().id(), job.id());
    exportjobs::v1::FailExportJobRequest fail;
    fail.set_job_id(job.id());
    fail.set_lease_token(again.lease().token());
    fail.set_error_message("the source is gone");
    ASSERT_OK(workers.Fail(fail));
  }
  watcher.join();
  EXPECT_OK(watched);
  EXPECT_THAT(log.Revisions(), ElementsAre(1, 2, 3, 4, 5));
  EXPECT_EQ(log.Events().back().job().status(), exportjobs::v1::EXPORT_JOB_STATUS_FAILED);
}

// --- Batched and coalesced creates ---------------------------------------------------------

// Results of CreateAsync calls, collected on gRPC threads and awaited on the test's.
class AsyncResults {
 public:
  ExportClient::CreateCallback Callback() {
    return [this](absl::StatusOr<ExportJob> job) {
      absl::MutexLock lock(&mu_);
      results_.push_back(std::move(job));
    };
  }
  // Waits (at most 30 s) for `count` results.
  std::vector<absl::StatusOr<ExportJob>> Await(size_t count) {
    absl::MutexLock lock(&mu_);
    auto reached = [&] { return results_.size() >= count; };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30)));
    return results_;
  }

 private:
  absl::Mutex mu_;
  std::vector<absl::StatusOr<ExportJob>> results_ ABSL_GUARDED_BY(mu_);
};

// The requests a proxied call carried: one for Create, the batch's for Batch.
size_t Carried(const FaultProxy::Call& call) {
  if (auto* batch =
          dynamic_cast<const exportjobs::v1::BatchCreateExportJobsRequest*>(call.request.get())) {
    return static_cast<size_t>(batch->requests_size());
  }
  return 1;
}

std::set<std::string> Ids(const std::vector<absl::StatusOr<ExportJob>>& results) {
  std::set<std::string> ids;
  for (const auto& job : results) {
    EXPECT_OK(job);
    if (job.ok()) ids.insert(job->id());
  }
  return ids;
}

int ListedJobs(TestServer& server) {
  exportjobs::v1::ListExportJobsRequest request;
  request.set_page_size(1000);
  exportjobs::v1::ListExportJobsResponse listed;
  EXPECT_TRUE(server.List(request, &listed).ok());
  return listed.jobs_size();
}

TEST_F(ExportClientTest, CreateManyAnswersEachRequestInOrderNamingFailedItems) {
  CreateExportJobRequest no_entity;
  CreateExportJobRequest first = AccountsRequest();
  first.set_request_id("many-1");
  const std::vector<absl::StatusOr<ExportJob>> results = client_.CreateMany(
      {first, no_entity, first, AccountsRequest(exportjobs::v1::ENTITY_TYPE_PEOPLE)});
  ASSERT_THAT(results, SizeIs(4));
  ASSERT_OK(results[0]);
  EXPECT_EQ(results[0]->request_id(), "many-1");
  EXPECT_THAT(results[1], StatusIs(absl::StatusCode::kInvalidArgument,
                                   ::testing::StartsWith("requests[1].entity_type: ")));
  ASSERT_OK(results[2]);
  EXPECT_EQ(results[2]->id(), results[0]->id());  // the same request_id: the same job
  ASSERT_OK(results[3]);
  EXPECT_EQ(results[3]->entity_type(), exportjobs::v1::ENTITY_TYPE_PEOPLE);
  EXPECT_THAT(results[3]->request_id(), MatchesRegex("[0-9a-f]{32}"));  // generated
  EXPECT_EQ(ListedJobs(server_), 2);
}

TEST_F(ExportClientTest, GeneratedRequestIdsSortInTheOrderTheyWereMade) {
  // A generated request_id starts with the time it was made (microseconds since the Unix epoch,
  // 16 hex digits), so that the server's idempotency index takes new ids at its end.
  const int64_t before = absl::ToUnixMicros(absl::Now());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(MustCreate().request_id());
  // Made in one loop, within microseconds of each other: still in order.
  const std::vector<absl::StatusOr<ExportJob>> many =
      client_.CreateMany(std::vector<CreateExportJobRequest>(8, AccountsRequest()));
  for (const absl::StatusOr<ExportJob>& job : many) {
    ASSERT_OK(job);
    ids.push_back(job->request_id());
  }
  const int64_t after = absl::ToUnixMicros(absl::Now());
  for (size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE(ids[i]);
    ASSERT_THAT(ids[i], MatchesRegex("[0-9a-f]{32}"));
    uint64_t micros = 0;
    ASSERT_TRUE(absl::SimpleHexAtoi(ids[i].substr(0, 16), &micros));
    EXPECT_GE(static_cast<int64_t>(micros), before);
    // At most one microsecond ahead of the clock per id made before it.
    EXPECT_LE(static_cast<int64_t>(micros), after + static_cast<int64_t>(ids.size()));
    if (i > 0) EXPECT_GT(ids[i], ids[i - 1]);
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
}

TEST_F(ExportClientTest, ConcurrentCreatesFromManyThreadsAllSucceedWithJobsOfTheirOwn) {
  constexpr int kThreads = 8;
  constexpr int kEach = 8;
  std::vector<std::vector<ExportJob>> created(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        absl::StatusOr<ExportJob> job = client_.Create(AccountsRequest());
        EXPECT_OK(job);
        if (job.ok()) created[t].push_back(*job);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::set<std::string> ids;
  for (const auto& jobs : created) {
    for (const ExportJob& job : jobs) ids.insert(job.id());
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(ListedJobs(server_), kThreads * kEach);
}

class CoalescingTest : public ::testing::Test {
 protected:
  explicit CoalescingTest(CoalesceOptions coalesce = OneCallInFlight())
      : proxy_(server_.address()),
        client_(MakeChannel(proxy_.address()), FastRetries(), coalesce) {}

  static CoalesceOptions OneCallInFlight() {
    CoalesceOptions coalesce;
    coalesce.max_calls_in_flight = 1;
    return coalesce;
  }

  // Starts a create whose call the proxy holds (so that it stays in flight), and waits until the
  // proxy has it.
  void HoldOneCreate(AsyncResults& results) {
    proxy_.Script("Create", {FaultProxy::Hold()});
    client_.CreateAsync(AccountsRequest(), results.Callback());
    ASSERT_TRUE(proxy_.AwaitHeld(1));
  }

  TestServer server_;
  FaultProxy proxy_;
  ExportClient client_;
};

TEST_F(CoalescingTest, CreatesMadeWhileACallIsInFlightLeaveTogetherInOneBatch) {
  AsyncResults results;
  HoldOneCreate(results);
  // 63 creates while the first is in flight: they wait for it (no call leaves).
  for (int i = 0; i < 63; ++i) client_.CreateAsync(AccountsRequest(), results.Callback());
  EXPECT_THAT(proxy_.Calls("Batch"), IsEmpty());
  proxy_.ReleaseHeld();

  const std::vector<absl::StatusOr<ExportJob>> all = results.Await(64);
  ASSERT_THAT(all, SizeIs(64));
  EXPECT_EQ(Ids(all).size(), 64u);
  std::set<std::string> request_ids;
  for (const auto& job : all) {
    if (job.ok()) request_ids.insert(job->request_id());
  }
  EXPECT_EQ(request_ids.size(), 64u);
  // Two calls for 64 creates: the first alone, the other 63 in one batch.
  EXPECT_THAT(proxy_.Calls("Create"), SizeIs(1));
  const std::vector<FaultProxy::Call> batches = proxy_.Calls("Batch");
  ASSERT_THAT(batches, SizeIs(1));
  EXPECT_EQ(Carried(batches[0]), 63u);
  EXPECT_EQ(ListedJobs(server_), 64);
}

TEST_F(CoalescingTest, ASyncCreateAloneLeavesAtOnceAsItsOwnCall) {
  ASSERT_OK(client_.Create(AccountsRequest()));
  EXPECT_THAT(proxy_.Calls("Create"), SizeIs(1));
  EXPECT_THAT(proxy_.Calls("Batch"), IsEmpty());
}

TEST_F(CoalescingTest, ItemsOfABatchWhoseAnswerWasLostAreRetriedIntoTheSameJobs) {
  AsyncResults results;
  HoldOneCreate(results);
  // The batch creates its jobs, but its answer is lost: each item is retried with its
  // request_id.
  proxy_.Script("Batch", {FaultProxy::FailAfter(grpc::StatusCode::UNAVAILABLE)});
  for (int i = 0; i < 10; ++i) client_.CreateAsync(AccountsRequest(), results.Callback());
  proxy_.ReleaseHeld();

  const std::vector<absl::StatusOr<ExportJob>> all = results.Await(11);
  EXPECT_EQ(Ids(all).size(), 11u);
  EXPECT_EQ(ListedJobs(server_), 11);  // no duplicates
  // Every retried item carried the request_id of its first try.
  std::multiset<std::string> sent;
  for (const FaultProxy::Call& call : proxy_.Calls("Batch")) {
    for (const auto& request :
         static_cast<const exportjobs::v1::BatchCreateExportJobsRequest&>(*call.request)
             .requests()) {
      sent.insert(request.request_id());
    }
  }
  for (const FaultProxy::Call& call : proxy_.Calls("Create")) {
    sent.insert(static_cast<const CreateExportJobRequest&>(*call.request).request_id());
  }
  for (const auto& job : all) {
    if (job.ok()) {
      EXPECT_GE(sent.count(job->request_id()), 1u);
    }
  }
  EXPECT_EQ(sent.size(), 21u);  // 1 + 10 sent twice
}

TEST_F(CoalescingTest, PerItemErrorsReachTheirOwnCallersWithoutTheBatchIndex) {
  AsyncResults results;
  HoldOneCreate(results);
  CreateExportJobRequest bad = AccountsRequest();
  bad.add_fields("no_such_field");
  absl::Notification bad_done;
  absl::Status bad_status;
  client_.CreateAsync(AccountsRequest(), results.Callback());
  client_.CreateAsync(bad, [&](absl::StatusOr<ExportJob> job) {
    bad_status = job.status();
    bad_done.Notify();
  });
  client_.CreateAsync(AccountsRequest(), results.Callback());
  proxy_.ReleaseHeld();
  ASSERT_TRUE(bad_done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_THAT(bad_status,
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::StartsWith("fields[2]: ")));
  EXPECT_EQ(Ids(results.Await(3)).size(), 3u);
  EXPECT_THAT(proxy_.Calls("Batch"), SizeIs(1));
}

TEST_F(CoalescingTest, AServerWithoutBatchCreateGetsOneCallPerCreateFromThenOn) {
  AsyncResults results;
  HoldOneCreate(results);
  proxy_.Script("Batch", {FaultProxy::FailBefore(grpc::StatusCode::UNIMPLEMENTED)});
  for (int i = 0; i < 5; ++i) client_.CreateAsync(AccountsRequest(), results.Callback());
  proxy_.ReleaseHeld();
  EXPECT_EQ(Ids(results.Await(6)).size(), 6u);
  EXPECT_THAT(proxy_.Calls("Batch"), SizeIs(1));
  EXPECT_THAT(proxy_.Calls("Create"), SizeIs(6));

  // Remembered: concurrent creates now leave one call each, without waiting for a slot.
  AsyncResults later;
  HoldOneCreate(later);  // the proxy's 7th Create
  for (int i = 0; i < 4; ++i) client_.CreateAsync(AccountsRequest(), later.Callback());
  ASSERT_TRUE(proxy_.AwaitCalls("Create", 11));
  proxy_.ReleaseHeld();
  EXPECT_EQ(Ids(later.Await(5)).size(), 5u);
  EXPECT_THAT(proxy_.Calls("Batch"), SizeIs(1));
  EXPECT_EQ(ListedJobs(server_), 11);
}

TEST_F(CoalescingTest, ABatchEndsAtItsEarliestDeadlineAndTheOtherItemsAreSentAgain) {
  CallOptions options = FastRetries();
  options.timeout = absl::Seconds(2);
  ExportClient client(MakeChannel(proxy_.address()), options, OneCallInFlight());
  AsyncResults held, early, late;
  proxy_.Script("Create", {FaultProxy::Hold()});
  proxy_.Script("Batch", {FaultProxy::Hang()});
  client.CreateAsync(AccountsRequest(), held.Callback());
  ASSERT_TRUE(proxy_.AwaitHeld(1));
  // Two creates wait for the held call; the second's deadline is a second after the first's (the
  // pause sets the deadlines apart; nothing waits on it).
  client.CreateAsync(AccountsRequest(), early.Callback());
  absl::SleepFor(absl::Seconds(1));
  client.CreateAsync(AccountsRequest(), late.Callback());
  proxy_.ReleaseHeld();

  // They leave together; the batch hangs until the earlier deadline ends it. The earlier create
  // has no time left; the later one is sent again, alone, and is created.
  const std::vector<absl::StatusOr<ExportJob>> early_result = early.Await(1);
  ASSERT_THAT(early_result, SizeIs(1));
  EXPECT_THAT(early_result[0], StatusIs(absl::StatusCode::kDeadlineExceeded));
  const std::vector<absl::StatusOr<ExportJob>> late_result = late.Await(1);
  ASSERT_THAT(late_result, SizeIs(1));
  ASSERT_OK(late_result[0]);
  ASSERT_THAT(held.Await(1), SizeIs(1));

  const std::vector<FaultProxy::Call> batches = proxy_.Calls("Batch");
  ASSERT_THAT(batches, SizeIs(1));
  ASSERT_EQ(Carried(batches[0]), 2u);
  const auto& batch =
      static_cast<const exportjobs::v1::BatchCreateExportJobsRequest&>(*batches[0].request);
  // The later create went out again with the request_id it had in the batch.
  EXPECT_EQ(late_result[0]->request_id(), batch.requests(1).request_id());
  const std::vector<FaultProxy::Call> creates = proxy_.Calls("Create");
  ASSERT_THAT(creates, SizeIs(2));
  EXPECT_EQ(static_cast<const CreateExportJobRequest&>(*creates[1].request).request_id(),
            batch.requests(1).request_id());
  EXPECT_EQ(ListedJobs(server_), 2);  // the held create and the later one
}

TEST_F(CoalescingTest, AServerThatTakesSmallerBatchesIsFollowed) {
  ServerOptions options;
  options.create_limits.max_batch_creates = 4;
  TestServer small(options);
  FaultProxy proxy(small.address());
  ExportClient client(MakeChannel(proxy.address()), FastRetries(), OneCallInFlight());
  AsyncResults results;
  proxy.Script("Create", {FaultProxy::Hold()});
  client.CreateAsync(AccountsRequest(), results.Callback());
  ASSERT_TRUE(proxy.AwaitHeld(1));
  for (int i = 0; i < 10; ++i) client.CreateAsync(AccountsRequest(), results.Callback());
  proxy.ReleaseHeld();
  EXPECT_EQ(Ids(results.Await(11)).size(), 11u);
  EXPECT_EQ(ListedJobs(small), 11);
}

class CoalescingOffTest : public CoalescingTest {
 protected:
  CoalescingOffTest() : CoalescingTest(Off()) {}
  static CoalesceOptions Off() {
    CoalesceOptions coalesce;
    coalesce.enabled = false;
    return coalesce;
  }
};

TEST_F(CoalescingOffTest, EveryCreateIsItsOwnCallButCreateManyStillBatches) {
  AsyncResults results;
  HoldOneCreate(results);
  for (int i = 0; i < 5; ++i) client_.CreateAsync(AccountsRequest(), results.Callback());
  // They leave at once, each alone, while the first is still in flight.
  ASSERT_TRUE(proxy_.AwaitCalls("Create", 6));
  proxy_.ReleaseHeld();
  EXPECT_EQ(Ids(results.Await(6)).size(), 6u);
  EXPECT_THAT(proxy_.Calls("Batch"), IsEmpty());

  const std::vector<absl::StatusOr<ExportJob>> many =
      client_.CreateMany({AccountsRequest(), AccountsRequest(), AccountsRequest()});
  EXPECT_EQ(Ids(many).size(), 3u);
  const std::vector<FaultProxy::Call> batches = proxy_.Calls("Batch");
  ASSERT_THAT(batches, SizeIs(1));
  EXPECT_EQ(Carried(batches[0]), 3u);
}
}  // namespace
}  // namespace exportd::client
