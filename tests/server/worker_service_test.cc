// WorkerService over a real gRPC channel to a real server: claims, progress, part uploads,
// completion, and the errors of each.
#include <httplib.h>
#include <openssl/sha.h>
#include <sys/resource.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/test_server.h"

namespace exportd::testing {
namespace {

using exportjobs::v1::ClaimExportJobRequest;
using exportjobs::v1::ClaimExportJobResponse;
using exportjobs::v1::UploadExportPartRequest;
using exportjobs::v1::UploadExportPartResponse;
using exportjobs::v1::WorkerService;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

class WorkerServiceTest : public ::testing::Test {
 protected:
  explicit WorkerServiceTest(ServerOptions options = {})
      : server_(options), workers_(WorkerService::NewStub(NewChannel(server_.address(), 7))) {}

  ClaimExportJobResponse Claim() {
    ClaimExportJobRequest request;
    request.set_worker_id("worker-1");
    ClaimExportJobResponse response;
    grpc::Status status = workers_->ClaimExportJob(Deadlined().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // Uploads `chunks` as one part; the trailer states `size` and `sha` (defaults: the truth).
  grpc::Status Upload(const std::string& job_id, const std::string& token, int part,
                      const std::vector<std::string>& chunks, UploadExportPartResponse* response,
                      int64_t size = -1, std::string sha = "", bool send_trailer = true,
                      bool send_header = true) {
    std::string all;
    for (const auto& c : chunks) all += c;
    auto context = Deadlined();
    auto writer = workers_->UploadExportPart(context.get(), response);
    UploadExportPartRequest message;
    if (send_header) {
      message.mutable_header()->set_job_id(job_id);
      message.mutable_header()->set_lease_token(token);
      message.mutable_header()->set_part_number(part);
      message.mutable_header()->set_record_count(3);
      writer->Write(message);
    }
    for (const auto& c : chunks) {
      message.set_chunk(c);
      writer->Write(message);
    }
    if (send_trailer) {
      message.mutable_trailer()->set_size_bytes(size < 0 ? static_cast<int64_t>(all.size()) : size);
      message.mutable_trailer()->set_sha256(sha.empty() ? Sha256Hex(all) : sha);
      writer->Write(message);
    }
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status Complete(const std::string& job_id, const std::string& token,
                        const std::vector<exportjobs::v1::ExportPart>& parts, ExportJob* job) {
    exportjobs::v1::CompleteExportJobRequest request;
    request.set_job_id(job_id);
    request.set_lease_token(token);
    int64_t records = 0;
    for (const auto& p : parts) {
      *request.add_parts() = p;
      records += p.record_count();
    }
    request.set_record_count(records);
    return workers_->CompleteExportJob(Deadlined().get(), request, job);
  }

  TestServer server_;
  std::unique_ptr<WorkerService::Stub> workers_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// `n` chunks of `size` bytes that differ from chunk to chunk.
std::vector<std::string> Chunks(int n, size_t size) {
  std::vector<std::string> chunks;
  for (int i = 0; i < n; ++i) {
    std::string chunk(size, static_cast<char>('a' + i % 26));
    chunk.replace(0, std::min<size_t>(size, 16), absl::StrCat("chunk ", i, " ").substr(0, 16));
    chunks.push_back(std::move(chunk));
  }
  return chunks;
}

// Files (temporary ones included) under the server's part directory.
int CountPartFiles(const std::string& data_dir) {
  int n = 0;
  std::error_code error;
  for (auto it = std::filesystem::recursive_directory_iterator(data_dir + "/parts", error);
       !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_regular_file()) ++n;
  }
  return n;
}

exportjobs::v1::ExportPart PartOf(const std::vector<std::string>& chunks) {
  std::string all;
  for (const auto& c : chunks) all += c;
  exportjobs::v1::ExportPart part;
  part.set_part_number(1);
  part.set_size_bytes(static_cast<int64_t>(all.size()));
  part.set_record_count(3);
  part.set_sha256(Sha256Hex(all));
  return part;
}

TEST_F(WorkerServiceTest, ClaimUploadCompleteOverGrpc) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  ClaimExportJobResponse claimed = Claim();
  ASSERT_EQ(claimed.job().id(), job.id());
  const std::string token = claimed.lease().token();

  exportjobs::v1::ReportProgressRequest progress;
  progress.set_job_id(job.id());
  progress.set_lease_token(token);
  progress.set_records_processed(3);
  exportjobs::v1::ReportProgressResponse progress_response;
  ASSERT_TRUE(workers_->ReportProgress(Deadlined().get(), progress, &progress_response).ok());
  UploadExportPartResponse uploaded;
  grpc::Status upload = Upload(job.id(), token, 1, {"id,name\r\n", "1,Acme\r\n"}, &uploaded);
  ASSERT_TRUE(upload.ok()) << upload.error_message();
  ExportJob completed;
  grpc::Status complete = Complete(job.id(), token, {uploaded.part()}, &completed);
  ASSERT_TRUE(complete.ok()) << complete.error_message();

  EXPECT_EQ(uploaded.part().size_bytes(), 17);
  EXPECT_EQ(uploaded.part().sha256(), Sha256Hex("id,name\r\n1,Acme\r\n"));
  EXPECT_EQ(completed.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  EXPECT_EQ(completed.record_count(), 3);
  EXPECT_EQ(completed.file_size_bytes(), 17);
  EXPECT_EQ(ReadFile(server_.data_dir() + "/parts/" + job.id() + "/1/1.part"),
            "id,name\r\n1,Acme\r\n");
  ExportJob stored;
  ASSERT_TRUE(server_.Get(job.id(), &stored).ok());
  EXPECT_EQ(stored.DebugString(), completed.DebugString());
}

TEST_F(WorkerServiceTest, ACompletedJobDownloadsFromItsSignedUrl) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  const std::string token = Claim().lease().token();
  UploadExportPartResponse first;
  UploadExportPartResponse second;
  ASSERT_TRUE(Upload(job.id(), token, 1, {"name,domain\r\n", "Acme,acme.com\r\n"}, &first).ok());
  ASSERT_TRUE(Upload(job.id(), token, 2, {"Initech,initech.com\r\n"}, &second).ok());
  ExportJob completed;
  ASSERT_TRUE(Complete(job.id(), token, {first.part(), second.part()}, &completed).ok());

  const std::string base = "http://" + server_.server().http_address();
  ASSERT_THAT(completed.download_url(), StartsWith(base + "/v1/export-jobs/" + job.id()));
  httplib::Client client(base);
  client.set_connection_timeout(10);
  client.set_read_timeout(10);
  auto file = client.Get(completed.download_url().substr(base.size()));
  std::string forged = completed.download_url();
  forged.back() = forged.back() == '0' ? '1' : '0';
  auto refused = client.Get(forged.substr(base.size()));

  ASSERT_TRUE(file);
  EXPECT_EQ(file->status, 200);
  EXPECT_EQ(file->body, "name,domain\r\nAcme,acme.com\r\nInitech,initech.com\r\n");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403);
  ASSERT_EQ(completed.parts_size(), 2);
  auto part2 = client.Get(completed.parts(1).download_url().substr(base.size()));
  ASSERT_TRUE(part2);
  EXPECT_EQ(part2->status, 200);
  EXPECT_EQ(part2->body, "Initech,initech.com\r\n");
}

// Reads a whole DownloadExport stream.
grpc::Status Download(ExportService::Stub& stub, const std::string& id, int part,
                      std::string* bytes) {
  exportjobs::v1::DownloadExportRequest request;
  request.set_id(id);
  request.set_part(part);
  auto context = Deadlined();
  auto reader = stub.DownloadExport(context.get(), request);
  exportjobs::v1::DownloadExportResponse chunk;
  while (reader->Read(&chunk)) *bytes += chunk.chunk();
  return reader->Finish();
}

TEST_F(WorkerServiceTest, ACompletedJobDownloadsOverGrpcWholeOrByPart) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  const std::string token = Claim().lease().token();
  UploadExportPartResponse first;
  UploadExportPartResponse second;
  const std::string big(3 << 20, 'x');  // Several chunks.
  ASSERT_TRUE(Upload(job.id(), token, 1, {"head\n", big}, &first).ok());
  ASSERT_TRUE(Upload(job.id(), token, 2, {"tail\n"}, &second).ok());
  ExportJob pending;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &pending).ok());
  ExportJob completed;
  ASSERT_TRUE(Complete(job.id(), token, {first.part(), second.part()}, &completed).ok());

  std::string whole, part2, missing, not_done, negative;
  grpc::Status whole_status = Download(server_.stub(), job.id(), 0, &whole);
  grpc::Status part2_status = Download(server_.stub(), job.id(), 2, &part2);
  grpc::Status missing_status = Download(server_.stub(), job.id(), 3, &missing);
  grpc::Status pending_status = Download(server_.stub(), pending.id(), 0, &not_done);
  grpc::Status negative_status = Download(server_.stub(), job.id(), -1, &negative);

  ASSERT_TRUE(whole_status.ok()) << whole_status.error_message();
  EXPECT_EQ(whole, "head\n" + big + "tail\n");
  ASSERT_TRUE(part2_status.ok()) << part2_status.error_message();
  EXPECT_EQ(part2, "tail\n");
  EXPECT_EQ(missing_status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(pending_status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(negative_status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(negative_status.error_message(), StartsWith("part: "));
}

TEST_F(WorkerServiceTest, UploadWithAWrongChecksumOrSizeKeepsNothing) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  const std::string token = Claim().lease().token();
  UploadExportPartResponse response;

  grpc::Status bad_sha = Upload(job.id(), token, 1, {"abc"}, &response, -1, Sha256Hex("abd"));
  grpc::Status bad_size = Upload(job.id(), token, 1, {"abc"}, &response, 4);
  exportjobs::v1::ExportPart claimed_part;
  claimed_part.set_part_number(1);
  claimed_part.set_size_bytes(3);
  claimed_part.set_record_count(3);
  claimed_part.set_sha256(Sha256Hex("abc"));
  ExportJob completed;
  grpc::Status complete = Complete(job.id(), token, {claimed_part}, &completed);

  EXPECT_EQ(bad_sha.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad_sha.error_message(), StartsWith("sha256: "));
  EXPECT_EQ(bad_size.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad_size.error_message(), StartsWith("size_bytes: "));
  EXPECT_EQ(complete.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(complete.error_message(), HasSubstr("part 1 was not uploaded"));
  EXPECT_FALSE(std::filesystem::exists(server_.data_dir() + "/parts/" + job.id() + "/1/1.part"));
}

TEST_F(WorkerServiceTest, UploadUnderAStaleLeaseIsAborted) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  Claim();
  UploadExportPartResponse response;

  grpc::Status status = Upload(job.id(), "stale-token", 1, {"abc"}, &response);

  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
}

TEST_F(WorkerServiceTest, MalformedUploadStreamsAreInvalidArgument) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  const std::string token = Claim().lease().token();
  UploadExportPartResponse response;

  grpc::Status no_header = Upload(job.id(), token, 1, {"abc"}, &response, -1, "", true, false);
  grpc::Status no_trailer = Upload(job.id(), token, 1, {"abc"}, &response, -1, "", false);
  grpc::Status part_zero = Upload(job.id(), token, 0, {"abc"}, &response);

  EXPECT_EQ(no_header.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_header.error_message(), StartsWith("header: must come first"));
  EXPECT_EQ(no_trailer.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_trailer.error_message(), StartsWith("trailer: "));
  EXPECT_EQ(part_zero.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(part_zero.error_message(), StartsWith("header.part_number: "));
}

// Chunks are read while earlier ones are written: a part of many chunks of uneven sizes is
// stored byte for byte.
TEST_F(WorkerServiceTest, APartOfManyChunksIsStoredWhole) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  const std::string token = Claim().lease().token();
  std::vector<std::string> chunks = Chunks(12, (1 << 20) + 13);
  chunks.push_back("tail");
  std::string all;
  for (const auto& c : chunks) all += c;
  UploadExportPartResponse response;

  grpc::Status status = Upload(job.id(), token, 1, chunks, &response);

  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.part().size_bytes(), static_cast<int64_t>(all.size()));
  EXPECT_EQ(response.part().sha256(), Sha256Hex(all));
  EXPECT_TRUE(ReadFile(server_.data_dir() + "/parts/" + job.id() + "/1/1.part") == all);
}

// A worker that stops while its chunks are still being written: the call ends CANCELLED, the
// part does not exist, and no file is left once the server has drained.
TEST_F(WorkerServiceTest, AnUploadCancelledMidStreamLeavesNoPart) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  const std::string token = Claim().lease().token();
  const std::vector<std::string> chunks = Chunks(16, 1 << 20);
  auto context = Deadlined();
  UploadExportPartResponse response;
  auto writer = workers_->UploadExportPart(context.get(), &response);
  UploadExportPartRequest message;
  message.mutable_header()->set_job_id(job.id());
  message.mutable_header()->set_lease_token(token);
  message.mutable_header()->set_part_number(1);
  message.mutable_header()->set_record_count(3);
  ASSERT_TRUE(writer->Write(message));
  for (const auto& c : chunks) {
    message.set_chunk(c);
    ASSERT_TRUE(writer->Write(message));
  }

  context->TryCancel();
  grpc::Status status = writer->Finish();
  ExportJob completed;
  grpc::Status complete = Complete(job.id(), token, {PartOf(chunks)}, &completed);
  server_.server().Shutdown();

  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  EXPECT_EQ(complete.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(complete.error_message(), HasSubstr("part 1 was not uploaded"));
  EXPECT_EQ(CountPartFiles(server_.data_dir()), 0);
}

// The stream ends (half-closed) without a trailer while the chunks before are being written.
TEST_F(WorkerServiceTest, AStreamEndingWithoutItsTrailerMidPipelineKeepsNothing) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  const std::string token = Claim().lease().token();
  const std::vector<std::string> chunks = Chunks(16, 1 << 20);
  UploadExportPartResponse response;

  grpc::Status status = Upload(job.id(), token, 1, chunks, &response, -1, "", false);
  ExportJob completed;
  grpc::Status complete = Complete(job.id(), token, {PartOf(chunks)}, &completed);
  server_.server().Shutdown();

  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("trailer: the stream ended before"));
  EXPECT_EQ(complete.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(CountPartFiles(server_.data_dir()), 0);
}

// A write that fails while later chunks are still arriving (here: past the process's file size
// limit, as on a full disk) ends the upload UNAVAILABLE naming the write, and keeps nothing.
TEST_F(WorkerServiceTest, AWriteFailingMidPipelineIsUnavailableAndKeepsNothing) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  const std::string token = Claim().lease().token();
  const std::vector<std::string> chunks = Chunks(24, 1 << 20);
  struct rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  void (*old_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 6 << 20;  // Above what the job database writes in this test.
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);
  UploadExportPartResponse response;

  grpc::Status status = Upload(job.id(), token, 1, chunks, &response);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  std::signal(SIGXFSZ, old_handler);
  ExportJob completed;
  grpc::Status complete = Complete(job.id(), token, {PartOf(chunks)}, &completed);
  server_.server().Shutdown();

  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_THAT(status.error_message(), StartsWith("write "));
  EXPECT_EQ(complete.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(CountPartFiles(server_.data_dir()), 0);
}

class SmallLimitsWorkerServiceTest : public WorkerServiceTest {
 protected:
  static ServerOptions SmallLimits() {
    ServerOptions options;
    options.workers.max_chunk_bytes = 4096;
    options.workers.max_part_bytes = 10000;
    return options;
  }
  SmallLimitsWorkerServiceTest() : WorkerServiceTest(SmallLimits()) {}
};

TEST_F(SmallLimitsWorkerServiceTest, ChunksOverTheLimitsAreRefusedNamingTheField) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  const std::string token = Claim().lease().token();
  UploadExportPartResponse response;

  grpc::Status too_large = Upload(job.id(), token, 1, {"abc", std::string(4097, 'x')}, &response);
  grpc::Status part_too_large = Upload(job.id(), token, 1, Chunks(3, 4000), &response);
  grpc::Status at_the_limits = Upload(job.id(), token, 1, Chunks(2, 4096), &response);
  server_.server().Shutdown();

  EXPECT_EQ(too_large.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(too_large.error_message(), "chunk: 4097 bytes, at most 4096");
  EXPECT_EQ(part_too_large.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(part_too_large.error_message(), "chunk: the part exceeds 10000 bytes");
  EXPECT_TRUE(at_the_limits.ok()) << at_the_limits.error_message();
  EXPECT_EQ(CountPartFiles(server_.data_dir()), 1);  // The last upload's part alone.
}

TEST_F(WorkerServiceTest, AWaitingClaimIsAnsweredByTheNextCreate) {
  ClaimExportJobRequest request;
  request.set_worker_id("worker-1");
  request.mutable_wait()->set_seconds(20);
  ClaimExportJobResponse response;
  grpc::Status status;
  absl::Notification done;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  workers_->async()->ClaimExportJob(&context, &request, &response, [&](grpc::Status s) {
    status = s;
    done.Notify();
  });
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (server_.server().job_manager()->waiting_claims() == 0 && absl::Now() < give_up) {
    std::this_thread::yield();
  }
  ASSERT_EQ(server_.server().job_manager()->waiting_claims(), 1);

  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  done.WaitForNotification();

  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.job().id(), job.id());
  EXPECT_FALSE(response.lease().token().empty());
}

TEST_F(WorkerServiceTest, ACancelledWaitingClaimIsNotGivenAJob) {
  ClaimExportJobRequest request;
  request.set_worker_id("worker-that-stops");
  request.mutable_wait()->set_seconds(20);
  ClaimExportJobResponse response;
  absl::Notification done;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  workers_->async()->ClaimExportJob(&context, &request, &response,
                                    [&](grpc::Status) { done.Notify(); });
  JobManager* jobs = server_.server().job_manager();
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (jobs->waiting_claims() == 0 && absl::Now() < give_up) std::this_thread::yield();
  ASSERT_EQ(jobs->waiting_claims(), 1);

  context.TryCancel();
  done.WaitForNotification();
  // The server drops the claim at its next pass over the waiting claims (every tick).
  while (jobs->waiting_claims() != 0 && absl::Now() < give_up) std::this_thread::yield();
  ASSERT_EQ(jobs->waiting_claims(), 0);
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  ClaimExportJobResponse live = Claim();

  EXPECT_EQ(live.job().id(), job.id());
  EXPECT_EQ(live.job().attempt(), 1);
}

TEST_F(WorkerServiceTest, BadRequestsAreInvalidArgumentNamingTheField) {
  ClaimExportJobRequest no_worker;
  ClaimExportJobRequest bad_type;
  bad_type.set_worker_id("w");
  bad_type.add_entity_types(exportjobs::v1::ENTITY_TYPE_UNSPECIFIED);
  ClaimExportJobRequest negative_wait;
  negative_wait.set_worker_id("w");
  negative_wait.mutable_wait()->set_seconds(-1);
  ClaimExportJobResponse response;
  exportjobs::v1::FailExportJobRequest fail;
  fail.set_job_id("0000000000000000000000aa");
  fail.set_lease_token("t");
  ExportJob job;

  grpc::Status s1 = workers_->ClaimExportJob(Deadlined().get(), no_worker, &response);
  grpc::Status s2 = workers_->ClaimExportJob(Deadlined().get(), bad_type, &response);
  grpc::Status s3 = workers_->ClaimExportJob(Deadlined().get(), negative_wait, &response);
  grpc::Status s4 = workers_->FailExportJob(Deadlined().get(), fail, &job);
  exportjobs::v1::ExportPart bad_part;
  bad_part.set_part_number(1);
  bad_part.set_sha256("XYZ");
  grpc::Status s5 = Complete("0000000000000000000000aa", "t", {bad_part}, &job);

  EXPECT_THAT(s1.error_message(), StartsWith("worker_id: must be set"));
  EXPECT_THAT(s2.error_message(), StartsWith("entity_types[0]: unknown value 0"));
  EXPECT_THAT(s3.error_message(), StartsWith("wait: "));
  EXPECT_THAT(s4.error_message(), StartsWith("error_message: must be set"));
  EXPECT_THAT(s5.error_message(), StartsWith("parts[0].sha256: "));
  for (const grpc::Status& s : {s1, s2, s3, s4, s5}) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  }
}

TEST_F(WorkerServiceTest, MaxJobsOutOfRangeIsInvalidArgumentNamingTheField) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  ClaimExportJobRequest negative;
  negative.set_worker_id("w");
  negative.set_max_jobs(-1);
  ClaimExportJobRequest too_many;
  too_many.set_worker_id("w");
  too_many.set_max_jobs(257);
  ClaimExportJobResponse response;

  grpc::Status s1 = workers_->ClaimExportJob(Deadlined().get(), negative, &response);
  grpc::Status s2 = workers_->ClaimExportJob(Deadlined().get(), too_many, &response);

  EXPECT_EQ(s1.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s1.error_message(), StartsWith("max_jobs: must be 0 to 256"));
  EXPECT_THAT(s1.error_message(), HasSubstr("got -1"));
  EXPECT_EQ(s2.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s2.error_message(), HasSubstr("got 257"));
  // Neither claimed the job.
  EXPECT_EQ(Claim().job().id(), job.id());
}

TEST_F(WorkerServiceTest, OneClaimTakesSeveralJobsEachUnderItsOwnLease) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ExportJob job;
    ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
    ids.push_back(job.id());
  }
  ClaimExportJobRequest request;
  request.set_worker_id("worker-1");
  request.set_max_jobs(2);
  ClaimExportJobResponse two;
  ClaimExportJobResponse rest;

  ASSERT_TRUE(workers_->ClaimExportJob(Deadlined().get(), request, &two).ok());
  ASSERT_TRUE(workers_->ClaimExportJob(Deadlined().get(), request, &rest).ok());

  EXPECT_EQ(two.job().id(), ids[0]);
  ASSERT_EQ(two.more_jobs_size(), 1);
  EXPECT_EQ(two.more_jobs(0).job().id(), ids[1]);
  EXPECT_EQ(two.more_jobs(0).job().status(), exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING);
  EXPECT_NE(two.more_jobs(0).lease().token(), two.lease().token());
  EXPECT_EQ(rest.job().id(), ids[2]);
  EXPECT_EQ(rest.more_jobs_size(), 0);
  // Each lease is its own job's: the second job's token completes it, the first's does not.
  ExportJob completed;
  grpc::Status wrong = Complete(ids[1], two.lease().token(), {}, &completed);
  grpc::Status right = Complete(ids[1], two.more_jobs(0).lease().token(), {}, &completed);
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::ABORTED) << wrong.error_message();
  ASSERT_TRUE(right.ok()) << right.error_message();
  EXPECT_EQ(completed.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
}

TEST_F(WorkerServiceTest, ABatchOverGrpcCompletesAJobAndClaimsTheNext) {
  ExportJob first;
  ExportJob next;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &first).ok());
  ASSERT_TRUE(server_.Create(AccountsRequest(), &next).ok());
  const std::string token = Claim().lease().token();
  exportjobs::v1::BatchReportExportJobsRequest request;
  exportjobs::v1::CompleteExportJobRequest& complete = *request.add_reports()->mutable_complete();
  complete.set_job_id(first.id());
  complete.set_lease_token(token);
  request.mutable_claim()->set_worker_id("worker-1");
  request.mutable_claim()->set_max_jobs(4);
  exportjobs::v1::BatchReportExportJobsResponse response;

  grpc::Status status = workers_->BatchReportExportJobs(Deadlined().get(), request, &response);

  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), 1);
  EXPECT_EQ(response.results(0).code(), 0) << response.results(0).message();
  EXPECT_EQ(response.results(0).job().status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  ASSERT_EQ(response.claimed_size(), 1);
  EXPECT_EQ(response.claimed(0).job().id(), next.id());
  ExportJob stored;
  ASSERT_TRUE(server_.Get(first.id(), &stored).ok());
  EXPECT_EQ(stored.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
}

TEST_F(WorkerServiceTest, AMalformedBatchIsInvalidArgumentNamingTheFieldAndAppliesNothing) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  const std::string token = Claim().lease().token();
  // A valid first report, then a bad one: the call is refused as a whole.
  exportjobs::v1::BatchReportExportJobsRequest bad_sha;
  exportjobs::v1::ReportProgressRequest& progress = *bad_sha.add_reports()->mutable_progress();
  progress.set_job_id(job.id());
  progress.set_lease_token(token);
  progress.set_records_processed(5);
  exportjobs::v1::CompleteExportJobRequest& complete = *bad_sha.add_reports()->mutable_complete();
  complete.set_job_id(job.id());
  complete.set_lease_token(token);
  complete.set_record_count(1);
  complete.add_parts()->set_sha256("XYZ");
  exportjobs::v1::BatchReportExportJobsRequest empty_report;
  empty_report.add_reports();
  exportjobs::v1::BatchReportExportJobsRequest no_max_jobs;
  no_max_jobs.mutable_claim()->set_worker_id("w");
  exportjobs::v1::BatchReportExportJobsRequest too_many_jobs;
  too_many_jobs.mutable_claim()->set_worker_id("w");
  too_many_jobs.mutable_claim()->set_max_jobs(257);
  exportjobs::v1::BatchReportExportJobsRequest no_worker;
  no_worker.mutable_claim()->set_max_jobs(1);
  exportjobs::v1::BatchReportExportJobsRequest too_many_reports;
  for (int i = 0; i < 257; ++i) *too_many_reports.add_reports() = bad_sha.reports(0);
  exportjobs::v1::BatchReportExportJobsResponse response;

  std::vector<grpc::Status> statuses;
  for (const auto* request :
       {&bad_sha, &empty_report, &no_max_jobs, &too_many_jobs, &no_worker, &too_many_reports}) {
    statuses.push_back(workers_->BatchReportExportJobs(Deadlined().get(), *request, &response));
  }

  EXPECT_THAT(statuses[0].error_message(), StartsWith("reports[1].complete.parts[0].sha256: "));
  EXPECT_THAT(statuses[1].error_message(),
              StartsWith("reports[0]: must hold progress or complete"));
  EXPECT_THAT(statuses[2].error_message(), StartsWith("claim.max_jobs: must be 1 to 256, got 0"));
  EXPECT_THAT(statuses[3].error_message(), HasSubstr("got 257"));
  EXPECT_THAT(statuses[4].error_message(), StartsWith("claim.worker_id: must be set"));
  EXPECT_THAT(statuses[5].error_message(), StartsWith("reports: at most 256 per call, got 257"));
  for (const grpc::Status& s : statuses) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  }
  ExportJob stored;
  ASSERT_TRUE(server_.Get(job.id(), &stored).ok());
  EXPECT_EQ(stored.progress().records_processed(), 0);  // The valid report was not applied.
  EXPECT_EQ(stored.status(), exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING);
}

TEST_F(WorkerServiceTest, AnExportOfNoRecordsCompletesWithoutPartsAndDownloadsEmpty) {
  ExportJob job;
  ASSERT_TRUE(server_.Create(AccountsRequest(), &job).ok());
  const std::string token = Claim().lease().token();
  ExportJob completed;
  ASSERT_TRUE(Complete(job.id(), token, {}, &completed).ok());

  EXPECT_EQ(completed.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  EXPECT_EQ(completed.record_count(), 0);
  EXPECT_EQ(completed.file_parts(), 0);
  EXPECT_EQ(completed.file_size_bytes(), 0);
  const std::string base = "http://" + server_.server().http_address();
  ASSERT_THAT(completed.download_url(), StartsWith(base + "/v1/export-jobs/" + job.id()));
  httplib::Client client(base);
  client.set_connection_timeout(10);
  client.set_read_timeout(10);
  auto file = client.Get(completed.download_url().substr(base.size()));
  ASSERT_TRUE(file);
  EXPECT_EQ(file->status, 200);
  EXPECT_EQ(file->body, "");
  std::string bytes;
  grpc::Status streamed = Download(server_.stub(), job.id(), 0, &bytes);
  EXPECT_TRUE(streamed.ok()) << streamed.error_message();
  EXPECT_EQ(bytes, "");
}

}  // namespace
}  // namespace exportd::testing
