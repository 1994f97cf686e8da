// WorkerClient against a real in-process export-server over loopback gRPC (the worker protocol's
// answers and errors, a parked claim cancelled), and against FakeWorkerService, a WorkerService
// of the test's own that answers as scripted and records what it received, for what a real
// server can't be made to do on demand: fail an upload after reading it, never answer a claim.
#include <openssl/sha.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/export_client.h"
#include "common/str_cat.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/test_server.h"
#include "tests/status_matchers.h"
#include "tests/support/grpc_timing.h"

namespace exportd::client {
namespace {

using exportd::test_support::kGrpcDeadlineSlack;
using exportd::testing::AccountsRequest;
using exportd::testing::IsOk;
using exportd::testing::StatusIs;
using exportd::testing::TestServer;
using exportjobs::v1::ClaimExportJobRequest;
using exportjobs::v1::ClaimExportJobResponse;
using exportjobs::v1::ExportJob;
using exportjobs::v1::UploadExportPartRequest;
using exportjobs::v1::UploadExportPartResponse;
using exportjobs::v1::WorkerService;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr size_t kMiB = size_t{1} << 20;

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

CallOptions FastRetries(int max_attempts = 5) {
  CallOptions options;
  options.timeout = absl::Seconds(10);
  options.retry.max_attempts = max_attempts;
  options.retry.initial_backoff = absl::Milliseconds(5);
  options.retry.max_backoff = absl::Milliseconds(20);
  return options;
}

ClaimExportJobRequest ClaimRequest(absl::Duration wait) {
  ClaimExportJobRequest request;
  request.set_worker_id("test-worker");
  request.mutable_wait()->set_seconds(absl::ToInt64Seconds(wait));
  request.mutable_wait()->set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(wait % absl::Seconds(1))));
  return request;
}

// A part whose bytes `read` hands out in chunks of `chunk` bytes; rewind starts over and is
// counted.
struct MemoryPart {
  MemoryPart(std::string data, size_t chunk) : data(std::move(data)), chunk(chunk) {}

  WorkerClient::PartUpload Upload(const std::string& job_id, const std::string& token, int number,
                                  bool with_rewind = true) {
    WorkerClient::PartUpload upload;
    upload.header.set_job_id(job_id);
    upload.header.set_lease_token(token);
    upload.header.set_part_number(number);
    upload.header.set_record_count(2);
    upload.trailer.set_size_bytes(static_cast<int64_t>(data.size()));
    upload.trailer.set_sha256(Sha256Hex(data));
    upload.read = [this]() -> absl::StatusOr<std::string> {
      std::string next = data.substr(offset, chunk);
      offset += next.size();
      return next;
    };
    if (with_rewind) {
      upload.rewind = [this] {
        ++rewinds;
        offset = 0;
        return absl::OkStatus();
      };
    }
    return upload;
  }

  const std::string data;
  const size_t chunk;
  size_t offset = 0;
  int rewinds = 0;
};

// --- The real server -----------------------------------------------------------------------

class WorkerClientTest : public ::testing::Test {
 protected:
  WorkerClientTest()
      : jobs_(MakeChannel(server_.address()), FastRetries()),
        workers_(MakeChannel(server_.address()), FastRetries()) {}

  // Creates a job and claims it.
  ClaimExportJobResponse CreateAndClaim() {
    absl::StatusOr<ExportJob> job = jobs_.Create(AccountsRequest());
    EXPECT_OK(job);
    absl::StatusOr<ClaimExportJobResponse> claimed = workers_.Claim(ClaimRequest(absl::Seconds(5)));
    EXPECT_OK(claimed);
    if (!job.ok() || !claimed.ok()) return {};
    EXPECT_EQ(claimed->job().id(), job->id());
    return *claimed;
  }

  TestServer server_;
  ExportClient jobs_;
  WorkerClient workers_;
};

TEST_F(WorkerClientTest, ClaimReportUploadComplete) {
  const ClaimExportJobResponse claimed = CreateAndClaim();
  const std::string& id = claimed.job().id();
  const std::string& token = claimed.lease().token();
  EXPECT_EQ(claimed.job().status(), exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING);

  exportjobs::v1::ReportProgressRequest progress;
  progress.set_job_id(id);
  progress.set_lease_token(token);
  progress.set_records_processed(2);
  ASSERT_OK_AND_ASSIGN(exportjobs::v1::ReportProgressResponse reported,
                       workers_.ReportProgress(progress));
  EXPECT_TRUE(reported.has_lease_expires_at());
  EXPECT_FALSE(reported.cancel_requested());

  MemoryPart part("id,name\r\n1,Acme\r\n2,Initech\r\n", 8);
  ASSERT_OK_AND_ASSIGN(UploadExportPartResponse uploaded,
                       workers_.Upload(part.Upload(id, token, 1)));
  EXPECT_EQ(uploaded.part().part_number(), 1);
  EXPECT_EQ(uploaded.part().size_bytes(), static_cast<int64_t>(part.data.size()));
  EXPECT_EQ(uploaded.part().sha256(), Sha256Hex(part.data));
  EXPECT_EQ(part.rewinds, 0);

  exportjobs::v1::CompleteExportJobRequest complete;
  complete.set_job_id(id);
  complete.set_lease_token(token);
  complete.set_record_count(2);
  *complete.add_parts() = uploaded.part();
  ASSERT_OK_AND_ASSIGN(ExportJob completed, workers_.Complete(complete));
  EXPECT_EQ(completed.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  EXPECT_EQ(completed.record_count(), 2);

  std::string file;
  EXPECT_OK(jobs_.Download(id, 0, absl::Seconds(10), [&](std::string_view chunk) {
    file.append(chunk);
    return absl::OkStatus();
  }));
  EXPECT_EQ(file, part.data);
}

TEST_F(WorkerClientTest, ClaimWithoutAJobAnswersEmpty) {
  ASSERT_OK_AND_ASSIGN(ClaimExportJobResponse claimed,
                       workers_.Claim(ClaimRequest(absl::ZeroDuration())));
  EXPECT_FALSE(claimed.has_job());
}

TEST_F(WorkerClientTest, ErrorsCarryTheServersCodeAndMessage) {
  ClaimExportJobRequest negative_wait = ClaimRequest(absl::ZeroDuration());
  negative_wait.mutable_wait()->set_seconds(-1);
  EXPECT_THAT(workers_.Claim(negative_wait),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("wait")));

  const ClaimExportJobResponse claimed = CreateAndClaim();
  const std::string& id = claimed.job().id();
  exportjobs::v1::ReportProgressRequest stale;
  stale.set_job_id(id);
  stale.set_lease_token("not-the-lease");
  EXPECT_THAT(workers_.ReportProgress(stale), StatusIs(absl::StatusCode::kAborted));

  MemoryPart part("abc", 2);
  WorkerClient::PartUpload bad_sha = part.Upload(id, claimed.lease().token(), 1);
  bad_sha.trailer.set_sha256("XYZ");
  EXPECT_THAT(workers_.Upload(bad_sha),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trailer.sha256")));

  // A manifest naming a part that was never uploaded.
  exportjobs::v1::CompleteExportJobRequest complete;
  complete.set_job_id(id);
  complete.set_lease_token(claimed.lease().token());
  complete.set_record_count(2);
  exportjobs::v1::ExportPart* missing = complete.add_parts();
  missing->set_part_number(1);
  missing->set_size_bytes(3);
  missing->set_record_count(2);
  missing->set_sha256(Sha256Hex("abc"));
  EXPECT_THAT(workers_.Complete(complete), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(WorkerClientTest, FailAndReleaseEndTheAttempt) {
  ClaimExportJobResponse claimed = CreateAndClaim();
  exportjobs::v1::FailExportJobRequest fail;
  fail.set_job_id(claimed.job().id());
  fail.set_lease_token(claimed.lease().token());
  fail.set_error_message("source: no such table");
  fail.set_retryable(false);
  ASSERT_OK_AND_ASSIGN(ExportJob failed, workers_.Fail(fail));
  EXPECT_EQ(failed.status(), exportjobs::v1::EXPORT_JOB_STATUS_FAILED);
  EXPECT_EQ(failed.error_message(), "source: no such table");

  // Cancel requested while processing: progress tells, release ends it cancelled.
  claimed = CreateAndClaim();
  ASSERT_OK(jobs_.Cancel(claimed.job().id()));
  exportjobs::v1::ReportProgressRequest progress;
  progress.set_job_id(claimed.job().id());
  progress.set_lease_token(claimed.lease().token());
  ASSERT_OK_AND_ASSIGN(exportjobs::v1::ReportProgressResponse reported,
                       workers_.ReportProgress(progress));
  EXPECT_TRUE(reported.cancel_requested());
  exportjobs::v1::ReleaseExportJobRequest release;
  release.set_job_id(claimed.job().id());
  release.set_lease_token(claimed.lease().token());
  ASSERT_OK_AND_ASSIGN(ExportJob released, workers_.Release(release));
  EXPECT_EQ(released.status(), exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  // The lease ended with it.
  EXPECT_THAT(workers_.Release(release), StatusIs(absl::StatusCode::kAborted));
}

// Uploads from several threads share one channel, so gRPC may finish sending (and free) one
// thread's chunks on another's, and the server runs many uploads' tasks on its I/O threads at
// once. Every part still arrives whole and is answered. Under ThreadSanitizer this is also the
// check that the chunks' memory is handed between those threads in order; and its slowness
// there widens the window in which the server once never answered an upload (the part
// committed before the header's task had ended: 3 of 120 runs hung until the deadline).
TEST_F(WorkerClientTest, UploadsFromManyThreadsOnOneClientEachArriveWhole) {
  constexpr int kThreads = 8;
  constexpr int kPartsEach = 40;
  std::vector<ClaimExportJobResponse> claims;
  for (int i = 0; i < kThreads; ++i) claims.push_back(CreateAndClaim());
  ASSERT_EQ(claims.size(), static_cast<size_t>(kThreads));
  std::vector<std::vector<absl::StatusOr<UploadExportPartResponse>>> results(kThreads);
  std::vector<std::string> contents(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    contents[t] = std::string(1000 + 4096 * t, static_cast<char>('a' + t));
    threads.emplace_back([&, t] {
      for (int number = 1; number <= kPartsEach; ++number) {
        MemoryPart part(contents[t], 8192);
        results[t].push_back(
            workers_.Upload(part.Upload(claims[t].job().id(), claims[t].lease().token(), number)));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_THAT(results[t], SizeIs(kPartsEach));
    for (int number = 1; number <= kPartsEach; ++number) {
      const absl::StatusOr<UploadExportPartResponse>& uploaded = results[t][number - 1];
      ASSERT_OK(uploaded) << "thread " << t << ", part " << number;
      EXPECT_EQ(uploaded->part().part_number(), number);
      EXPECT_EQ(uploaded->part().size_bytes(), static_cast<int64_t>(contents[t].size()));
      EXPECT_EQ(uploaded->part().sha256(), Sha256Hex(contents[t]));
    }
  }
}

TEST_F(WorkerClientTest, CancelTokenEndsAParkedClaimPromptly) {
  CancelToken cancel;
  absl::Status claimed;
  std::thread claimer([&] {
    claimed = workers_.Claim(ClaimRequest(absl::Seconds(20)), {.cancel = &cancel}).status();
  });
  // The claim is parked on the server.
  const absl::Time parked_by = absl::Now() + absl::Seconds(10);
  while (server_.server().job_manager()->waiting_claims() < 1 && absl::Now() < parked_by) {
    std::this_thread::yield();
  }
  ASSERT_EQ(server_.server().job_manager()->waiting_claims(), 1);
  const absl::Time start = absl::Now();
  cancel.Cancel();
  claimer.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_THAT(claimed, StatusIs(absl::StatusCode::kCancelled));
}

// --- FakeWorkerService ---------------------------------------------------------------------

class HangingReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override { Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")); }
  void OnDone() override { delete this; }
};

class FakeWorkerService final : public WorkerService::CallbackService {
 public:
  // How one call is answered; calls past the script are answered OK (an empty response, or
  // for an upload the part of its header).
  struct Step {
    bool hang = false;
    grpc::StatusCode code = grpc::StatusCode::OK;
  };
  static Step Answer(grpc::StatusCode code) { return {false, code}; }
  static Step Hang() { return {true, grpc::StatusCode::OK}; }

  // What one UploadExportPart call received.
  struct Upload {
    std::multimap<std::string, std::string> metadata;
    UploadExportPartRequest::Header header;
    std::vector<size_t> chunk_sizes;
    std::string bytes;
    bool has_trailer = false;
  };

  FakeWorkerService() {
    grpc::ServerBuilder builder;
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    address_ = Cat("127.0.0.1:", port);
  }
  ~FakeWorkerService() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  const std::string& address() const { return address_; }

  void Script(const std::string& method, std::vector<Step> steps) {
    absl::MutexLock lock(&mu_);
    for (const Step& step : steps) steps_[method].push_back(step);
  }
  int Calls(const std::string& method) const {
    absl::MutexLock lock(&mu_);
    auto found = calls_.find(method);
    return found == calls_.end() ? 0 : found->second;
  }
  // Waits (at most 30 s) until `count` uploads ended; returns them.
  std::vector<Upload> AwaitUploads(size_t count) const {
    absl::MutexLock lock(&mu_);
    auto reached = [&] { return uploads_.size() >= count; };
    mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30));
    return uploads_;
  }

  grpc::ServerUnaryReactor* ClaimExportJob(grpc::CallbackServerContext* context,
                                           const ClaimExportJobRequest*,
                                           ClaimExportJobResponse*) override {
    return Unary(context, "Claim");
  }
  grpc::ServerUnaryReactor* ReportProgress(grpc::CallbackServerContext* context,
                                           const exportjobs::v1::ReportProgressRequest*,
                                           exportjobs::v1::ReportProgressResponse*) override {
    return Unary(context, "ReportProgress");
  }
  grpc::ServerUnaryReactor* CompleteExportJob(grpc::CallbackServerContext* context,
                                              const exportjobs::v1::CompleteExportJobRequest*,
                                              ExportJob*) override {
    return Unary(context, "Complete");
  }
  grpc::ServerUnaryReactor* FailExportJob(grpc::CallbackServerContext* context,
                                          const exportjobs::v1::FailExportJobRequest*,
                                          ExportJob*) override {
    return Unary(context, "Fail");
  }
  grpc::ServerUnaryReactor* ReleaseExportJob(grpc::CallbackServerContext* context,
                                             const exportjobs::v1::ReleaseExportJobRequest*,
                                             ExportJob*) override {
    return Unary(context, "Release");
  }
  grpc::ServerReadReactor<UploadExportPartRequest>* UploadExportPart(
      grpc::CallbackServerContext* context, UploadExportPartResponse* response) override {
    return new UploadReader(this, context, response);
  }

 private:
  // Reads a whole upload, then answers as scripted.
  class UploadReader final : public grpc::ServerReadReactor<UploadExportPartRequest> {
   public:
    UploadReader(FakeWorkerService* service, grpc::CallbackServerContext* context,
                 UploadExportPartResponse* response)
        : service_(service), response_(response) {
      for (const auto& [key, value] : context->client_metadata()) {
        upload_.metadata.emplace(std::string(key.data(), key.size()),
                                 std::string(value.data(), value.size()));
      }
      StartRead(&message_);
    }
    void OnReadDone(bool ok) override {
      if (ok) {
        if (message_.has_header()) upload_.header = message_.header();
        if (message_.has_trailer()) upload_.has_trailer = true;
        if (message_.item_case() == UploadExportPartRequest::kChunk) {
          upload_.chunk_sizes.push_back(message_.chunk().size());
          upload_.bytes += message_.chunk();
        }
        return StartRead(&message_);
      }
      const int32_t number = upload_.header.part_number();
      const Step step = service_->EndUpload(std::move(upload_));
      if (step.code == grpc::StatusCode::OK) response_->mutable_part()->set_part_number(number);
      Finish(grpc::Status(step.code, step.code == grpc::StatusCode::OK ? "" : "injected"));
    }
    void OnDone() override { delete this; }

   private:
    FakeWorkerService* const service_;
    UploadExportPartResponse* const response_;
    UploadExportPartRequest message_;
    Upload upload_;
  };

  Step Next(const std::string& method) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++calls_[method];
    std::deque<Step>& steps = steps_[method];
    if (steps.empty()) return Step{};
    const Step step = steps.front();
    steps.pop_front();
    return step;
  }

  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, const std::string& method) {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      step = Next(method);
    }
    if (step.hang) return new HangingReactor();
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status(step.code, step.code == grpc::StatusCode::OK ? "" : "injected"));
    return reactor;
  }

  Step EndUpload(Upload upload) {
    absl::MutexLock lock(&mu_);
    uploads_.push_back(std::move(upload));
    return Next("Upload");
  }

  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::deque<Step>> steps_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<Upload> uploads_ ABSL_GUARDED_BY(mu_);
};

// The options export-worker uses: a deadline per try, and the codes it retries.
CallOptions WorkerOptions(absl::Duration timeout, int max_attempts) {
  CallOptions options = FastRetries(max_attempts);
  options.timeout = timeout;
  options.timeout_per_try = true;
  options.retry.retryable_codes = {absl::StatusCode::kUnavailable,
                                   absl::StatusCode::kDeadlineExceeded,
                                   absl::StatusCode::kResourceExhausted};
  return options;
}

class WorkerClientFaultTest : public ::testing::Test {
 protected:
  WorkerClientFaultTest() : workers_(MakeChannel(fake_.address()), FastRetries()) {}

  FakeWorkerService fake_;
  WorkerClient workers_;
};

TEST_F(WorkerClientFaultTest, UploadIsRetriedFromTheFirstByteAfterRewind) {
  CallOptions options = FastRetries();
  options.metadata = {{"authorization", "Bearer worker-secret"}};
  WorkerClient workers(MakeChannel(fake_.address()), options);
  fake_.Script("Upload", {FakeWorkerService::Answer(grpc::StatusCode::UNAVAILABLE)});
  MemoryPart part("0123456789", 4);
  ASSERT_OK_AND_ASSIGN(UploadExportPartResponse uploaded,
                       workers.Upload(part.Upload("job", "token", 3)));
  EXPECT_EQ(uploaded.part().part_number(), 3);
  EXPECT_EQ(part.rewinds, 1);
  const std::vector<FakeWorkerService::Upload> uploads = fake_.AwaitUploads(2);
  ASSERT_THAT(uploads, SizeIs(2));
  for (const FakeWorkerService::Upload& upload : uploads) {
    EXPECT_EQ(upload.header.job_id(), "job");
    EXPECT_EQ(upload.header.part_number(), 3);
    EXPECT_EQ(upload.bytes, "0123456789");
    EXPECT_THAT(upload.chunk_sizes, ElementsAre(size_t{4}, size_t{4}, size_t{2}));
    EXPECT_TRUE(upload.has_trailer);
    EXPECT_EQ(upload.metadata.find("authorization")->second, "Bearer worker-secret");
  }
}

TEST_F(WorkerClientFaultTest, UploadWithoutRewindIsNotRetried) {
  fake_.Script("Upload", {FakeWorkerService::Answer(grpc::StatusCode::UNAVAILABLE)});
  MemoryPart part("0123456789", 4);
  EXPECT_THAT(workers_.Upload(part.Upload("job", "token", 1, /*with_rewind=*/false)),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(fake_.AwaitUploads(1), SizeIs(1));
  EXPECT_EQ(fake_.Calls("Upload"), 1);
}

TEST_F(WorkerClientFaultTest, ReadErrorEndsTheUploadWithoutRetry) {
  MemoryPart part("0123456789", 4);
  WorkerClient::PartUpload upload = part.Upload("job", "token", 1);
  int reads = 0;
  upload.read = [&]() -> absl::StatusOr<std::string> {
    if (++reads == 2) return absl::UnavailableError("reading part file: I/O error");
    return std::string("0123");
  };
  EXPECT_THAT(workers_.Upload(upload),
              StatusIs(absl::StatusCode::kUnavailable, "reading part file: I/O error"));
  EXPECT_EQ(part.rewinds, 0);
  const std::vector<FakeWorkerService::Upload> uploads = fake_.AwaitUploads(1);
  ASSERT_THAT(uploads, SizeIs(1));
  EXPECT_FALSE(uploads[0].has_trailer);  // Cancelled before the trailer.
}

TEST_F(WorkerClientFaultTest, LongChunksAreSplitIntoMessagesOfAtMostOneMiB) {
  MemoryPart part(std::string(2 * kMiB + kMiB / 2, 'x'), 3 * kMiB);
  ASSERT_OK(workers_.Upload(part.Upload("job", "token", 1)));
  const std::vector<FakeWorkerService::Upload> uploads = fake_.AwaitUploads(1);
  ASSERT_THAT(uploads, SizeIs(1));
  EXPECT_THAT(uploads[0].chunk_sizes, ElementsAre(kMiB, kMiB, kMiB / 2));
  EXPECT_EQ(uploads[0].bytes, part.data);
}

TEST_F(WorkerClientFaultTest, ClaimDeadlineIsItsWaitPlusTheTimeout) {
  CallOptions options = FastRetries();
  options.timeout = absl::Milliseconds(200);
  WorkerClient workers(MakeChannel(fake_.address()), options);
  fake_.Script("Claim", {FakeWorkerService::Hang()});
  const absl::Time start = absl::Now();
  EXPECT_THAT(workers.Claim(ClaimRequest(absl::Milliseconds(300))),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(500) - kGrpcDeadlineSlack);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(fake_.Calls("Claim"), 1);  // A shared deadline that passed is not retried.
}

TEST_F(WorkerClientFaultTest, WithADeadlinePerTryDeadlineExceededIsRetried) {
  WorkerClient workers(MakeChannel(fake_.address()),
                       WorkerOptions(absl::Milliseconds(100), /*max_attempts=*/3));
  fake_.Script("ReportProgress",
               {FakeWorkerService::Hang(), FakeWorkerService::Hang(), FakeWorkerService::Hang()});
  // Each try's DEADLINE_EXCEEDED is retried until the tries run out. Counted on the client: a
  // try whose 100 ms run out before the server sees it (a slow, sanitized run) is a try too.
  std::vector<int> retried_after;
  CallControl control;
  control.on_retry = [&](const absl::Status& status, int attempt, absl::Duration) {
    EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
    retried_after.push_back(attempt);
  };
  const absl::Time start = absl::Now();
  EXPECT_THAT(workers.ReportProgress({}, control), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300) - kGrpcDeadlineSlack);
  EXPECT_THAT(retried_after, ::testing::ElementsAre(1, 2));
  EXPECT_GE(fake_.Calls("ReportProgress"), 1);

  // RESOURCE_EXHAUSTED too; ABORTED (the lease is lost) never.
  fake_.Script("Complete", {FakeWorkerService::Answer(grpc::StatusCode::RESOURCE_EXHAUSTED)});
  EXPECT_OK(workers.Complete({}));
  EXPECT_EQ(fake_.Calls("Complete"), 2);
  fake_.Script("Fail", {FakeWorkerService::Answer(grpc::StatusCode::ABORTED)});
  EXPECT_THAT(workers.Fail({}), StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(fake_.Calls("Fail"), 1);
}

TEST_F(WorkerClientFaultTest, CallControlBoundsTheTries) {
  const std::vector<FakeWorkerService::Step> always(
      10, FakeWorkerService::Answer(grpc::StatusCode::UNAVAILABLE));
  fake_.Script("Release", always);
  EXPECT_THAT(workers_.Release({}, {.max_attempts = 2}), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(fake_.Calls("Release"), 2);
  // No retry whose backoff would end past retry_until.
  EXPECT_THAT(workers_.Release({}, {.retry_until = absl::Now()}),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(fake_.Calls("Release"), 3);
  EXPECT_THAT(workers_.Release({}), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(fake_.Calls("Release"), 8);  // options().retry.max_attempts
}

TEST_F(WorkerClientFaultTest, OnRetryHearsOfEachRetryBeforeItsBackoff) {
  fake_.Script("Fail", {FakeWorkerService::Answer(grpc::StatusCode::UNAVAILABLE),
                        FakeWorkerService::Answer(grpc::StatusCode::UNAVAILABLE)});
  std::vector<std::string> heard;
  CallControl control;
  control.on_retry = [&](const absl::Status& status, int attempt, absl::Duration backoff) {
    heard.push_back(Cat(absl::StatusCodeToString(status.code()), " after try ", attempt,
                        backoff > absl::ZeroDuration() ? ", backoff" : ", none"));
  };
  EXPECT_OK(workers_.Fail({}, control).status());
  EXPECT_EQ(fake_.Calls("Fail"), 3);
  EXPECT_THAT(heard,
              ElementsAre("UNAVAILABLE after try 1, backoff", "UNAVAILABLE after try 2, backoff"));

  // A call that is not retried says nothing.
  heard.clear();
  fake_.Script("Fail", {FakeWorkerService::Answer(grpc::StatusCode::INVALID_ARGUMENT)});
  EXPECT_THAT(workers_.Fail({}, control), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(heard, ::testing::IsEmpty());
}

}  // namespace
}  // namespace exportd::client
