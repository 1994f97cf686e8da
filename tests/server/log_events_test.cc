// The JSON log lines of a real in-process export-server (captured with LogCapture): one line per
// job event with its fields, RPC errors other than the domain errors at warn, and the lifecycle.
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/test_server.h"
#include "tests/status_matchers.h"

namespace exportd::testing {
namespace {

using exportjobs::v1::ClaimExportJobRequest;
using exportjobs::v1::ClaimExportJobResponse;
using exportjobs::v1::WorkerService;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

std::vector<std::string> Keys(const Json& object) {
  std::vector<std::string> keys;
  for (auto it = object.begin(); it != object.end(); ++it) keys.push_back(it.key());
  return keys;
}

class LogEventsTest : public ::testing::Test {
 protected:
  LogEventsTest()
      : server_(Options(&clock_)),
        workers_(WorkerService::NewStub(NewChannel(server_.address(), 5))) {}

  static ServerOptions Options(const Clock* clock) {
    ServerOptions options;
    options.clock = clock;
    options.jobs.max_attempts = 2;
    return options;
  }

  ClaimExportJobResponse Claim(const std::string& worker) {
    ClaimExportJobRequest request;
    request.set_worker_id(worker);
    ClaimExportJobResponse response;
    grpc::Status status = workers_->ClaimExportJob(Deadlined().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // Returns once every change queued on the committer before it is applied.
  void Barrier() {
    absl::Notification done;
    server_.server().job_manager()->Update(
        "000000000000000000000000", [](JobRecord&) { return absl::OkStatus(); },
        [&](absl::StatusOr<ExportJob>) { done.Notify(); });
    done.WaitForNotification();
  }

  // Declared first: captures from before the server starts until after it stops.
  LogCapture capture_;
  FakeClock clock_{absl::Now()};
  TestServer server_;
  std::unique_ptr<WorkerService::Stub> workers_;
};

TEST_F(LogEventsTest, EachJobEventIsOneLineWithItsFields) {
  CreateExportJobRequest request = AccountsRequest();
  request.set_request_id("req-7");
  ExportJob job;
  ASSERT_TRUE(server_.Create(request, &job).ok());

  // Claimed by worker-a, failed retryably: retried.
  ClaimExportJobResponse first = Claim("worker-a");
  ASSERT_EQ(first.job().id(), job.id());
  exportjobs::v1::FailExportJobRequest fail;
  fail.set_job_id(job.id());
  fail.set_lease_token(first.lease().token());
  fail.set_error_message("source said \"no\"");
  fail.set_retryable(true);
  ExportJob ignored;
  ASSERT_TRUE(workers_->FailExportJob(Deadlined().get(), fail, &ignored).ok());
  // After the backoff, claimed by worker-b, whose lease expires: the last attempt, so it fails.
  clock_.Advance(absl::Minutes(10));
  ClaimExportJobResponse second = Claim("worker-b");
  ASSERT_EQ(second.job().id(), job.id());
  clock_.Advance(absl::Minutes(10));
  server_.server().job_manager()->Tick();
  Barrier();
  ASSERT_TRUE(server_.Delete(job.id()).ok());
  // A pending job cancelled.
  ExportJob other;
  ASSERT_TRUE(server_.Create(AccountsRequest(exportjobs::v1::ENTITY_TYPE_PEOPLE), &other).ok());
  ASSERT_TRUE(server_.Cancel(other.id(), &ignored).ok());

  std::vector<Json> created = capture_.Events("job.created");
  ASSERT_EQ(created.size(), 2u);
  EXPECT_THAT(Keys(created[0]), ElementsAre("ts", "level", "event", "job_id", "revision",
                                            "entity_type", "request_id"));
  EXPECT_EQ(created[0]["level"], "info");
  EXPECT_EQ(created[0]["job_id"], job.id());
  EXPECT_EQ(created[0]["revision"], 1);
  EXPECT_EQ(created[0]["entity_type"], "accounts");
  EXPECT_EQ(created[0]["request_id"], "req-7");

  std::vector<Json> claimed = capture_.Events("job.claimed");
  ASSERT_EQ(claimed.size(), 2u);
  EXPECT_EQ(claimed[0]["job_id"], job.id());
  EXPECT_EQ(claimed[0]["worker_id"], "worker-a");
  EXPECT_EQ(claimed[0]["attempt"], 1);
  EXPECT_EQ(claimed[1]["worker_id"], "worker-b");
  EXPECT_EQ(claimed[1]["attempt"], 2);

  std::vector<Json> retried = capture_.Events("job.retried");
  ASSERT_EQ(retried.size(), 1u);
  EXPECT_EQ(retried[0]["attempt"], 1);
  EXPECT_EQ(retried[0]["error"], "source said \"no\"");
  EXPECT_TRUE(retried[0]["retry_at"].is_string());

  std::vector<Json> expired = capture_.Events("job.lease_expired");
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0]["level"], "warn");
  EXPECT_EQ(expired[0]["worker_id"], "worker-b");
  EXPECT_EQ(expired[0]["attempt"], 2);
  EXPECT_EQ(expired[0]["outcome"], "failed");

  std::vector<Json> deleted = capture_.Events("job.deleted");
  ASSERT_EQ(deleted.size(), 1u);
  EXPECT_EQ(deleted[0]["job_id"], job.id());
  EXPECT_EQ(deleted[0]["reason"], "request");

  std::vector<Json> cancelled = capture_.Events("job.cancelled");
  ASSERT_EQ(cancelled.size(), 1u);
  EXPECT_EQ(cancelled[0]["job_id"], other.id());
  EXPECT_EQ(cancelled[0]["entity_type"], "people");

  // Every line is a JSON object with ts, level and event first.
  for (const std::string& line : capture_.Lines()) {
    Json parsed = Json::parse(line, nullptr, false);
    ASSERT_TRUE(parsed.is_object()) << line;
    std::vector<std::string> keys = Keys(parsed);
    ASSERT_GE(keys.size(), 3u) << line;
    EXPECT_THAT(std::vector<std::string>(keys.begin(), keys.begin() + 3),
                ElementsAre("ts", "level", "event"));
  }
}

TEST_F(LogEventsTest, CompletionAndFailureCarryTheirResult) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  ClaimExportJobResponse claimed = Claim("worker-a");
  exportjobs::v1::FailExportJobRequest fail;
  fail.set_job_id(job.id());
  fail.set_lease_token(claimed.lease().token());
  fail.set_error_message("no such table");
  ExportJob ignored;
  ASSERT_TRUE(workers_->FailExportJob(Deadlined().get(), fail, &ignored).ok());

  std::vector<Json> failed = capture_.Events("job.failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0]["level"], "warn");
  EXPECT_EQ(failed[0]["error"], "no such table");
  EXPECT_EQ(failed[0]["attempt"], 1);

  ExportJob done;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &done).ok());
  claimed = Claim("worker-a");
  exportjobs::v1::UploadExportPartResponse uploaded;
  {
    auto context = Deadlined();
    auto writer = workers_->UploadExportPart(context.get(), &uploaded);
    exportjobs::v1::UploadExportPartRequest message;
    message.mutable_header()->set_job_id(done.id());
    message.mutable_header()->set_lease_token(claimed.lease().token());
    message.mutable_header()->set_part_number(1);
    message.mutable_header()->set_record_count(0);
    writer->Write(message);
    message.mutable_trailer()->set_size_bytes(0);
    // SHA-256 of no bytes.
    message.mutable_trailer()->set_sha256(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    writer->Write(message);
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
  }
  exportjobs::v1::CompleteExportJobRequest complete;
  complete.set_job_id(done.id());
  complete.set_lease_token(claimed.lease().token());
  *complete.add_parts() = uploaded.part();
  ASSERT_TRUE(workers_->CompleteExportJob(Deadlined().get(), complete, &ignored).ok());

  std::vector<Json> completed = capture_.Events("job.completed");
  ASSERT_EQ(completed.size(), 1u);
  EXPECT_EQ(completed[0]["job_id"], done.id());
  EXPECT_EQ(completed[0]["record_count"], 0);
  EXPECT_EQ(completed[0]["file_parts"], 1);
  EXPECT_EQ(completed[0]["file_size_bytes"], 0);
  // Part uploads are debug lines.
  std::vector<Json> parts = capture_.Events("job.part_uploaded");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0]["level"], "debug");
}

TEST_F(LogEventsTest, DomainErrorsAreNotLoggedOthersAreWarnings) {
  ExportJob ignored;
  EXPECT_EQ(server_.Get("0123456789abcdef01234567", &ignored).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(server_.Create(CreateExportJobRequest(), &ignored).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(capture_.Events("rpc.error").empty());

  // While the server drains, a new call is refused UNAVAILABLE: not a domain error. Hold the
  // committer so that an in-flight create keeps the server draining meanwhile.
  ExportJob held;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &held).ok());
  absl::Notification entered;
  absl::Notification release;
  absl::Cleanup release_on_exit = [&] {
    if (!release.HasBeenNotified()) release.Notify();
  };
  absl::Notification update_done;
  server_.server().job_manager()->Update(
      held.id(),
      [&](JobRecord&) {
        entered.Notify();
        release.WaitForNotification();
        return absl::OkStatus();
      },
      [&](absl::StatusOr<ExportJob>) { update_done.Notify(); });
  entered.WaitForNotification();
  // The earlier create has left the server's count of calls in flight (its answer can reach
  // the client a moment before), so that the count below sees the next create arrive.
  const absl::Time left_by = absl::Now() + absl::Seconds(5);
  while (server_.server().calls_in_flight() > 0 && absl::Now() < left_by) {
    std::this_thread::yield();
  }
  CreateExportJobRequest request = AccountsRequest();
  absl::Notification in_flight_done;
  auto context = Deadlined();
  server_.stub().async()->CreateExportJob(context.get(), &request, &ignored,
                                          [&](grpc::Status) { in_flight_done.Notify(); });
  const absl::Time arrived_by = absl::Now() + absl::Seconds(5);
  while (server_.server().calls_in_flight() < 1 && absl::Now() < arrived_by) {
    std::this_thread::yield();
  }
  std::thread shutdown([&] { server_.server().Shutdown(); });
  grpc::Status refused;
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  do {
    refused = server_.Get(held.id(), &ignored);
  } while (refused.ok() && absl::Now() < give_up);
  std::move(release_on_exit).Invoke();
  shutdown.join();
  in_flight_done.WaitForNotification();
  update_done.WaitForNotification();

  ASSERT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  std::vector<Json> errors = capture_.Events("rpc.error");
  ASSERT_GE(errors.size(), 1u);
  EXPECT_EQ(errors[0]["level"], "warn");
  EXPECT_EQ(errors[0]["service"], "exportjobs.v1.ExportService");
  EXPECT_EQ(errors[0]["method"], "GetExportJob");
  EXPECT_EQ(errors[0]["code"], "UNAVAILABLE");
  EXPECT_THAT(errors[0]["message"].get<std::string>(), HasSubstr("shutting down"));
  EXPECT_TRUE(errors[0]["duration_ms"].is_number());
  // The lifecycle around it.
  ASSERT_EQ(capture_.Events("server.draining").size(), 1u);
  EXPECT_EQ(capture_.Events("server.stopped").size(), 1u);
}

TEST_F(LogEventsTest, StartIsLogged) {
  std::vector<Json> recovered = capture_.Events("server.recovered");
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0]["queued_jobs"], 0);
  EXPECT_TRUE(recovered[0]["seconds"].is_number());
}

}  // namespace
}  // namespace exportd::testing
