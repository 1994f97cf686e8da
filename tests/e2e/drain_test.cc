// Graceful drain on SIGTERM, with the real binaries.
//
// export-server, sent SIGTERM while a long-poll claim waits, a watch stream is open, a part
// upload is half sent and creates keep coming:
//   - new calls are refused UNAVAILABLE ("shutting down") and /readyz answers 503 draining;
//   - the waiting claim is answered OK without a job; the creates end with UNAVAILABLE;
//   - the watch receives the job's latest state, then ends UNAVAILABLE (so clients resume);
//   - the upload in flight is finished and answered OK during the drain;
//   - the server exits 0, and after a restart everything acknowledged is there: every
//     acknowledged create, the last progress, the part uploaded during the drain (the job then
//     completes with it under the same lease).
// export-worker, sent SIGTERM while it exports two jobs under 10-minute leases: it releases
// both (each is PENDING again at once and another worker claims it at once: a lease expiry
// cannot explain that) and exits 0; the released attempts' part files are removed.
// Waits poll an observable condition (a call's answer, /metrics, a file) with a deadline.

#include <signal.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/fault_helpers.h"
#include "tests/http/http_client.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::e2e {
namespace {

namespace fs = std::filesystem;
using exportjobs::v1::ClaimExportJobRequest;
using exportjobs::v1::ClaimExportJobResponse;
using exportjobs::v1::CreateExportJobRequest;
using exportjobs::v1::ExportJobEvent;
using exportjobs::v1::UploadExportPartRequest;
using exportjobs::v1::UploadExportPartResponse;
using test_support::TempDir;
using ::testing::HasSubstr;

CreateExportJobRequest AccountsRequest(const std::string& request_id) {
  CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  request.add_fields("id");
  request.add_fields("name");
  request.set_request_id(request_id);
  return request;
}

// A claim of any job (or only of `only`'s entity type).
grpc::Status Claim(Server& server, const std::string& worker_id, absl::Duration wait,
                   ClaimExportJobResponse* response,
                   exportjobs::v1::EntityType only = exportjobs::v1::ENTITY_TYPE_UNSPECIFIED) {
  grpc::ClientContext context;
  SetDeadline(context, wait + kCallTimeout);
  ClaimExportJobRequest request;
  request.set_worker_id(worker_id);
  if (only != exportjobs::v1::ENTITY_TYPE_UNSPECIFIED) request.add_entity_types(only);
  request.mutable_wait()->set_seconds(absl::ToInt64Seconds(wait));
  return server.workers->ClaimExportJob(&context, request, response);
}

// The value of an unlabelled metric in a /metrics page; -1 when absent.
double Metric(const std::string& page, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (absl::ConsumePrefix(&line, name + " ")) {
      double value = 0;
      if (absl::SimpleAtod(line, &value)) return value;
    }
  }
  return -1;
}

TEST(ServerDrainTest, SigtermAnswersInFlightCallsRefusesNewOnesAndKeepsEverything) {
  TempDir dir;
  const std::string data_dir = dir.path() + "/server";
  ASSERT_OK_AND_ASSIGN(Server server,
                       Server::Start(data_dir, {"--lease_duration=10m", "--shutdown_grace=20s"}));
  ExportJob watched, uploaded;
  ASSERT_TRUE(server.Create(AccountsRequest("watched"), &watched).ok());
  ASSERT_TRUE(server.Create(AccountsRequest("uploaded"), &uploaded).ok());
  ClaimExportJobResponse lease_w, lease_u;
  ASSERT_TRUE(Claim(server, "worker-1", absl::ZeroDuration(), &lease_w).ok());
  ASSERT_TRUE(Claim(server, "worker-1", absl::ZeroDuration(), &lease_u).ok());
  ASSERT_EQ(lease_w.job().id(), watched.id());
  ASSERT_EQ(lease_u.job().id(), uploaded.id());

  // A watch stream, open (its snapshot read).
  grpc::ClientContext watch_context;
  SetDeadline(watch_context, absl::Seconds(60));
  exportjobs::v1::WatchExportJobRequest watch_request;
  watch_request.set_id(watched.id());
  auto watch = server.exports->WatchExportJob(&watch_context, watch_request);
  ExportJobEvent event;
  ASSERT_TRUE(watch->Read(&event));
  ASSERT_EQ(event.job().status(), exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING);

  // A part upload in flight: header and one chunk sent (and taken by the server), no trailer
  // yet.
  const std::string part_bytes = "id,name\n1,drained\n";
  grpc::ClientContext upload_context;
  SetDeadline(upload_context, absl::Seconds(60));
  UploadExportPartResponse upload_response;
  auto upload = server.workers->UploadExportPart(&upload_context, &upload_response);
  UploadExportPartRequest message;
  message.mutable_header()->set_job_id(uploaded.id());
  message.mutable_header()->set_lease_token(lease_u.lease().token());
  message.mutable_header()->set_part_number(1);
  message.mutable_header()->set_record_count(1);
  ASSERT_TRUE(upload->Write(message));
  message.Clear();
  message.set_chunk(part_bytes);
  ASSERT_TRUE(upload->Write(message));
  // The server counts a chunk's bytes once it has taken them into the part (the part file is
  // written in large blocks, so its size on disk says nothing yet).
  ASSERT_TRUE(PollUntil(
      [&] {
        return Metric(testing::Fetch(server.http_address, "GET", "/metrics").body,
                      "exportd_upload_bytes_total") >= static_cast<double>(part_bytes.size());
      },
      absl::Seconds(10)))
      << "the upload's chunk never reached the server";

  // A long-poll claim, waiting in the server (of campaigns: no such job will be pending).
  grpc::Status waiting_status;
  ClaimExportJobResponse waiting_response;
  std::thread waiting_claim([&] {
    waiting_status = Claim(server, "worker-2", absl::Seconds(25), &waiting_response,
                           exportjobs::v1::ENTITY_TYPE_CAMPAIGNS);
  });
  ASSERT_TRUE(PollUntil(
      [&] {
        return Metric(testing::Fetch(server.http_address, "GET", "/metrics").body,
                      "exportd_waiting_claims") == 1;
      },
      absl::Seconds(10)))
      << "the claim never waited";

  // The watched job's latest state before the signal: two progress reports in a row, so that
  // the second is within the server's progress interval of the first and held back for
  // watchers (the drain must still deliver it).
  for (int records : {41, 42}) {
    grpc::ClientContext context;
    SetDeadline(context);
    exportjobs::v1::ReportProgressRequest progress;
    progress.set_job_id(watched.id());
    progress.set_lease_token(lease_w.lease().token());
    progress.set_records_processed(records);
    exportjobs::v1::ReportProgressResponse reported;
    ASSERT_TRUE(server.workers->ReportProgress(&context, progress, &reported).ok());
  }
  ExportJob latest;
  ASSERT_TRUE(server.Get(watched.id(), &latest).ok());
  ASSERT_EQ(latest.progress().records_processed(), 42);

  // Creates, one after another, until one is refused.
  absl::Mutex mu;
  std::vector<ExportJob> acknowledged;  // Guarded by mu.
  grpc::Status refused;
  std::thread creator([&] {
    for (int n = 0;; ++n) {
      ExportJob job;
      grpc::Status status = server.Create(AccountsRequest(absl::StrCat("load-", n)), &job);
      if (!status.ok()) {
        refused = status;
        return;
      }
      absl::MutexLock lock(&mu);
      acknowledged.push_back(job);
    }
  });
  ASSERT_TRUE(PollUntil(
      [&] {
        absl::MutexLock lock(&mu);
        return !acknowledged.empty();
      },
      absl::Seconds(10)));

  ASSERT_EQ(kill(server.process->pid(), SIGTERM), 0);

  // New calls are refused while the drain waits for the upload.
  grpc::Status get_status;
  ASSERT_TRUE(PollUntil(
      [&] {
        ExportJob job;
        get_status = server.Get(watched.id(), &job);
        return !get_status.ok();
      },
      absl::Seconds(10)));
  EXPECT_EQ(get_status.error_code(), grpc::StatusCode::UNAVAILABLE) << StatusText(get_status);
  EXPECT_THAT(get_status.error_message(), HasSubstr("shutting down"));
  const testing::Reply ready = testing::Fetch(server.http_address, "GET", "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_THAT(ready.body, HasSubstr("draining"));

  // The waiting claim is answered, without a job; the creates end refused.
  waiting_claim.join();
  EXPECT_TRUE(waiting_status.ok()) << StatusText(waiting_status);
  EXPECT_FALSE(waiting_response.has_job());
  creator.join();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << StatusText(refused);

  // The watch gets the latest state, then ends UNAVAILABLE.
  ExportJob last = event.job();
  while (watch->Read(&event)) last = event.job();
  const grpc::Status watch_end = watch->Finish();
  EXPECT_EQ(watch_end.error_code(), grpc::StatusCode::UNAVAILABLE) << StatusText(watch_end);
  EXPECT_EQ(last.revision(), latest.revision()) << Describe(last);
  EXPECT_EQ(last.progress().records_processed(), 42);

  // The upload in flight is finished and answered.
  message.Clear();
  message.mutable_trailer()->set_size_bytes(static_cast<int64_t>(part_bytes.size()));
  message.mutable_trailer()->set_sha256(Sha256Hex(part_bytes));
  ASSERT_TRUE(upload->Write(message));
  ASSERT_TRUE(upload->WritesDone());
  const grpc::Status upload_status = upload->Finish();
  ASSERT_TRUE(upload_status.ok()) << StatusText(upload_status);
  EXPECT_EQ(upload_response.part().sha256(), Sha256Hex(part_bytes));

  absl::StatusOr<test_support::ExitStatus> exit = server.process->Terminate(kProcessTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString() << "\n" << server.process->StderrTail();
  const std::string server_log = server.process->StderrTail();
  EXPECT_FALSE(LogEvents(server_log, "server.draining").empty()) << server_log;
  EXPECT_TRUE(LogEvents(server_log, "server.drain_timeout").empty()) << server_log;
  EXPECT_FALSE(LogEvents(server_log, "server.stopped").empty()) << server_log;

  // Everything acknowledged is there after a restart.
  ASSERT_OK_AND_ASSIGN(Server restarted,
                       Server::Start(data_dir, {"--lease_duration=10m", "--shutdown_grace=20s"}));
  {
    absl::MutexLock lock(&mu);
    for (const ExportJob& job : acknowledged) {
      ExportJob stored;
      const grpc::Status status = restarted.Get(job.id(), &stored);
      EXPECT_TRUE(status.ok()) << job.id() << ": " << StatusText(status);
      EXPECT_EQ(stored.request_id(), job.request_id());
    }
  }
  ExportJob stored;
  ASSERT_TRUE(restarted.Get(watched.id(), &stored).ok());
  EXPECT_EQ(stored.revision(), latest.revision());
  EXPECT_EQ(stored.progress().records_processed(), 42);
  ASSERT_TRUE(restarted.Get(uploaded.id(), &stored).ok());
  EXPECT_EQ(stored.progress().parts_uploaded(), 1) << Describe(stored);
  // The part uploaded during the drain completes the job, under the same lease.
  grpc::ClientContext complete_context;
  SetDeadline(complete_context);
  exportjobs::v1::CompleteExportJobRequest complete;
  complete.set_job_id(uploaded.id());
  complete.set_lease_token(lease_u.lease().token());
  complete.set_record_count(1);
  *complete.add_parts() = upload_response.part();
  ExportJob completed;
  const grpc::Status complete_status =
      restarted.workers->CompleteExportJob(&complete_context, complete, &completed);
  ASSERT_TRUE(complete_status.ok()) << StatusText(complete_status);
  ASSERT_OK_AND_ASSIGN(const std::string file, restarted.DownloadPart(uploaded.id(), 0));
  EXPECT_EQ(file, part_bytes);

  exit = restarted.process->Terminate(kProcessTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
}

// 400 accounts: 8,000 activities in 1 KiB parts, hundreds of synced uploads: seconds of work.
constexpr int kAccounts = 400;

TEST(WorkerDrainTest, SigtermReleasesTheJobsInProgressAtOnceAndExitsZero) {
  TempDir dir;
  const std::string db = dir.path() + "/demo.db";
  ASSERT_OK(SeedDemo(db, kAccounts));
  const std::string data_dir = dir.path() + "/server";
  // Leases of 10 minutes: a job pending again within the test was released, not expired.
  ASSERT_OK_AND_ASSIGN(Server server, Server::Start(data_dir, {"--lease_duration=10m"}));
  ASSERT_OK_AND_ASSIGN(
      Worker worker,
      Worker::Start(dir.path(), "worker-a", server.process->address(), db, {"--concurrency=2"}));
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    CreateExportJobRequest request;
    request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACTIVITIES);
    for (const char* field : {"id", "account_id", "type", "subject", "occurred_at"}) {
      request.add_fields(field);
    }
    request.set_part_size_bytes(1024);
    ExportJob job;
    ASSERT_TRUE(server.Create(request, &job).ok());
    ids.push_back(job.id());
  }
  // Both in progress, with parts uploaded.
  for (const std::string& id : ids) {
    ASSERT_OK_AND_ASSIGN(const ExportJob job, server.AwaitJob(
                                                  id,
                                                  [](const ExportJob& j) {
                                                    return IsTerminal(j.status()) ||
                                                           j.progress().parts_uploaded() > 0;
                                                  },
                                                  absl::Seconds(30), "progress"));
    ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING)
        << "the export ended before the worker could be stopped: " << Describe(job);
  }

  absl::StatusOr<test_support::ExitStatus> exit = worker.process->Terminate(kProcessTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString() << "\n" << worker.Log();
  const std::string log = worker.Log();
  const std::vector<nlohmann::json> stopped = LogEvents(log, "worker.stopped");
  ASSERT_EQ(stopped.size(), 1u) << log;
  EXPECT_EQ(stopped[0].value("released", -1), 2) << log;

  // Pending again at once (the worker exited after its releases were answered), and another
  // worker's claim gets each job now, not after the 10-minute lease.
  for (const std::string& id : ids) {
    EXPECT_FALSE(LogEvents(log, "job.released", id).empty()) << log;
    ExportJob job;
    ASSERT_TRUE(server.Get(id, &job).ok());
    EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_PENDING) << Describe(job);
  }
  std::vector<std::string> claimed;
  for (int i = 0; i < 2; ++i) {
    ClaimExportJobResponse response;
    const grpc::Status status = Claim(server, "worker-b", absl::ZeroDuration(), &response);
    ASSERT_TRUE(status.ok()) << StatusText(status);
    ASSERT_TRUE(response.has_job()) << "job " << i << " is not claimable";
    EXPECT_EQ(response.job().attempt(), 1) << "a release uses no attempt";
    claimed.push_back(response.job().id());
  }
  EXPECT_THAT(claimed, ::testing::UnorderedElementsAreArray(ids));
  // The released attempts' part files are removed.
  for (const std::string& id : ids) {
    EXPECT_TRUE(
        PollUntil([&] { return FilesUnder(data_dir + "/parts/" + id).empty(); }, absl::Seconds(10)))
        << absl::StrJoin(FilesUnder(data_dir + "/parts/" + id), ", ");
  }

  exit = server.process->Terminate(kProcessTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
}

}  // namespace
}  // namespace exportd::e2e
