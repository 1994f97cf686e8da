// The job store refusing writes: RocksDB's write-ahead log on a disk that is full or failing
// (FaultyFileSystem fails every log write while a fault is set). The real server over real gRPC
// must answer the calls that change a job UNAVAILABLE with a message naming the cause — never
// crash, never INTERNAL — keep answering reads, and write again once the disk works, without a
// restart (RocksDB stops all writes after a failed log write until it is resumed; the store
// resumes it). Everything acknowledged, before and after the fault, survives a restart, and
// the failed calls left no trace in the server's state (a failed claim used no attempt).
#include <chrono>
#include <memory>
#include <ostream>
#include <set>
#include <string>

#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "tests/server/test_server.h"
#include "tests/storage/faulty_fs.h"

namespace exportd::testing {

// Names the fault in test names (found by argument-dependent lookup, so not in the anonymous
// namespace).
void PrintTo(FaultyFileSystem::Fault fault, std::ostream* out) {
  *out << (fault == FaultyFileSystem::Fault::kNoSpace ? "no space" : "I/O error");
}

namespace {

using exportjobs::v1::ClaimExportJobRequest;
using exportjobs::v1::ClaimExportJobResponse;
using exportjobs::v1::WorkerService;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using Fault = FaultyFileSystem::Fault;

std::string Describe(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), ": ", status.error_message());
}

class StoreFaultTest : public ::testing::TestWithParam<Fault> {
 protected:
  // Starts a server on dir_ whose store writes through fs_.
  void Start() {
    ServerOptions options;
    options.data_dir = dir_.path();
    options.grpc_address = "127.0.0.1:0";
    options.http_address = "127.0.0.1:0";
    options.shutdown_grace = absl::Seconds(5);
    options.store_env = env_.get();
    options.insecure_no_auth = true;
    absl::StatusOr<std::unique_ptr<ExportServer>> server = ExportServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    exports_ = ExportService::NewStub(NewChannel(server_->grpc_address(), ++channels_));
    workers_ = WorkerService::NewStub(NewChannel(server_->grpc_address(), ++channels_));
  }

  grpc::Status Create(const std::string& request_id, ExportJob* job) {
    CreateExportJobRequest request = AccountsRequest();
    request.set_request_id(request_id);
    return exports_->CreateExportJob(Deadlined().get(), request, job);
  }
  grpc::Status Get(const std::string& id, ExportJob* job) {
    exportjobs::v1::GetExportJobRequest request;
    request.set_id(id);
    return exports_->GetExportJob(Deadlined().get(), request, job);
  }
  grpc::Status Cancel(const std::string& id, ExportJob* job) {
    exportjobs::v1::CancelExportJobRequest request;
    request.set_id(id);
    return exports_->CancelExportJob(Deadlined().get(), request, job);
  }
  grpc::Status Claim(ClaimExportJobResponse* response) {
    ClaimExportJobRequest request;
    request.set_worker_id("worker-1");
    return workers_->ClaimExportJob(Deadlined().get(), request, response);
  }

  // What a refused write must say: UNAVAILABLE (retry), naming the disk's error.
  void ExpectRefused(const grpc::Status& status, const std::string& call) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << call << ": " << Describe(status);
    EXPECT_THAT(status.error_message(), GetParam() == Fault::kNoSpace
                                            ? HasSubstr("No space left on device")
                                            : HasSubstr("Input/output error"))
        << call;
  }

  TempDir dir_;
  const std::shared_ptr<FaultyFileSystem> fs_ =
      std::make_shared<FaultyFileSystem>(rocksdb::FileSystem::Default());
  const std::unique_ptr<rocksdb::Env> env_ = rocksdb::NewCompositeEnv(fs_);
  std::unique_ptr<ExportServer> server_;
  std::unique_ptr<ExportService::Stub> exports_;
  std::unique_ptr<WorkerService::Stub> workers_;
  int channels_ = 0;
};

TEST_P(StoreFaultTest, WritesAreRefusedUnavailableAndWorkAgainOnceTheDiskDoes) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ExportJob first, second;
  ASSERT_TRUE(Create("first", &first).ok());
  ASSERT_TRUE(Create("second", &second).ok());

  fs_->SetFault(GetParam());
  ExportJob job;
  ExpectRefused(Create("refused", &job), "Create");
  // A second refusal: the store is not left stuck in some other state by the first.
  ExpectRefused(Cancel(first.id(), &job), "Cancel");
  ClaimExportJobResponse claim;
  ExpectRefused(Claim(&claim), "Claim");
  EXPECT_GT(fs_->refused(), 0);
  // Reads do not need the log.
  ExportJob read;
  ASSERT_TRUE(Get(first.id(), &read).ok());
  EXPECT_EQ(read.status(), exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  EXPECT_EQ(read.revision(), 1);

  // The disk works again: the very next writes succeed, no restart needed.
  fs_->ClearFault();
  ExportJob third;
  grpc::Status created = Create("third", &third);
  ASSERT_TRUE(created.ok()) << "Create after the fault cleared: " << Describe(created);
  // The refused claim changed nothing: the oldest job is claimed now, as its first attempt.
  ClaimExportJobResponse claimed;
  grpc::Status status = Claim(&claimed);
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_TRUE(claimed.has_job());
  EXPECT_EQ(claimed.job().id(), first.id());
  EXPECT_EQ(claimed.job().attempt(), 1);
  EXPECT_EQ(claimed.job().revision(), 2);
  ExportJob cancelled;
  status = Cancel(second.id(), &cancelled);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(cancelled.status(), exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);

  // Everything acknowledged is there after a restart; the refused create is not.
  server_->Shutdown();
  server_.reset();
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_TRUE(Get(first.id(), &read).ok());
  EXPECT_EQ(read.status(), exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING);
  EXPECT_EQ(read.revision(), 2);
  ASSERT_TRUE(Get(second.id(), &read).ok());
  EXPECT_EQ(read.status(), exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  ASSERT_TRUE(Get(third.id(), &read).ok());
  EXPECT_EQ(read.request_id(), "third");
  exportjobs::v1::ListExportJobsRequest list;
  exportjobs::v1::ListExportJobsResponse page;
  ASSERT_TRUE(exports_->ListExportJobs(Deadlined().get(), list, &page).ok());
  EXPECT_EQ(page.jobs_size(), 3);
  // And the restarted server writes.
  ExportJob fourth;
  EXPECT_TRUE(Create("fourth", &fourth).ok());
}

INSTANTIATE_TEST_SUITE_P(Faults, StoreFaultTest,
                         ::testing::Values(Fault::kNoSpace, Fault::kIoError),
                         [](const ::testing::TestParamInfo<Fault>& info) {
                           return info.param == Fault::kNoSpace ? "DiskFull" : "IoError";
                         });

// A log write whose sync failed: the caller was answered UNAVAILABLE, but the bytes reached
// the log, so the reopened store has the job after all. The server reads its claim queue again
// from the store after the next successful write: that job is claimable without a restart.
class SyncFaultTest : public StoreFaultTest {};

TEST_P(SyncFaultTest, AJobWhoseSyncFailedButWasStoredAfterAllIsClaimable) {
  ASSERT_NO_FATAL_FAILURE(Start());
  fs_->SetFault(GetParam());
  ExportJob job;
  ExpectRefused(Create("unsynced", &job), "Create");
  fs_->ClearFault();
  ExportJob next;
  grpc::Status created = Create("next", &next);
  ASSERT_TRUE(created.ok()) << Describe(created);

  exportjobs::v1::ListExportJobsRequest list;
  exportjobs::v1::ListExportJobsResponse page;
  ASSERT_TRUE(exports_->ListExportJobs(Deadlined().get(), list, &page).ok());
  std::set<std::string> stored;
  for (const ExportJob& stored_job : page.jobs()) stored.insert(stored_job.id());
  // The case under test: the refused create is stored after all.
  ASSERT_EQ(stored.size(), 2u) << "the unsynced create was not replayed";

  std::set<std::string> claimed;
  for (size_t i = 0; i < stored.size(); ++i) {
    ClaimExportJobResponse response;
    grpc::Status status = Claim(&response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    if (response.has_job()) claimed.insert(response.job().id());
  }
  EXPECT_EQ(claimed, stored);
}

INSTANTIATE_TEST_SUITE_P(Faults, SyncFaultTest, ::testing::Values(Fault::kSyncIoError),
                         [](const ::testing::TestParamInfo<Fault>&) { return "SyncFailed"; });

}  // namespace
}  // namespace exportd::testing
