// /metrics of a real in-process export-server after a known sequence of gRPC calls: exact
// counter values and labels, the gauges, and the count of jobs by status after a restart.
#include "server/metrics.h"

#include <openssl/sha.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/http/http_client.h"
#include "tests/server/test_server.h"
#include "tests/status_matchers.h"

namespace exportd::testing {
namespace {

using exportjobs::v1::ClaimExportJobRequest;
using exportjobs::v1::ClaimExportJobResponse;
using exportjobs::v1::WorkerService;
using ::testing::HasSubstr;

constexpr char kExportService[] = "exportjobs.v1.ExportService";
constexpr char kWorkerService[] = "exportjobs.v1.WorkerService";

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

// A series name as the text format writes it: labels sorted by name, a bucket's "le" last.
std::string Series(const std::string& name, std::map<std::string, std::string> labels = {}) {
  if (labels.empty()) return name;
  std::vector<std::string> parts;
  for (const auto& [label, value] : labels) {
    if (label != "le") parts.push_back(absl::StrCat(label, "=\"", value, "\""));
  }
  if (labels.contains("le")) parts.push_back(absl::StrCat("le=\"", labels["le"], "\""));
  return absl::StrCat(name, "{", absl::StrJoin(parts, ","), "}");
}

// A scrape: every sample by its series, and the HELP and TYPE lines by metric name.
struct Scrape {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> help;
  std::map<std::string, std::string> type;
  std::string text;

  // The sample's value; -1 when the series is absent.
  double operator[](const std::string& series) const {
    auto it = samples.find(series);
    return it == samples.end() ? -1 : it->second;
  }
};

Scrape Parse(const std::string& text) {
  Scrape scrape;
  scrape.text = text;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "# HELP ")) {
      const size_t space = line.find(' ');
      scrape.help[std::string(line.substr(0, space))] = std::string(line.substr(space + 1));
      continue;
    }
    if (absl::ConsumePrefix(&line, "# TYPE ")) {
      const size_t space = line.find(' ');
      scrape.type[std::string(line.substr(0, space))] = std::string(line.substr(space + 1));
      continue;
    }
    const size_t space = line.rfind(' ');
    double value = 0;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &value)) << line;
    scrape.samples[std::string(line.substr(0, space))] = value;
  }
  return scrape;
}

class MetricsTest : public ::testing::Test {
 protected:
  MetricsTest()
      : server_(Options(&clock_)),
        workers_(WorkerService::NewStub(NewChannel(server_.address(), 3))) {}

  static ServerOptions Options(const Clock* clock) {
    ServerOptions options;
    options.clock = clock;
    options.jobs.lease_duration = absl::Seconds(30);
    options.jobs.max_attempts = 3;
    return options;
  }

  Scrape Metrics() {
    Reply reply = HttpGet(server_.server().http_address(), "/metrics");
    EXPECT_EQ(reply.status, 200) << reply.error;
    EXPECT_EQ(reply.Header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    return Parse(reply.body);
  }

  ExportJob Create(exportjobs::v1::EntityType type) {
    ExportJob job;
    grpc::Status status = server_.Create(AccountsRequest(type), &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  ClaimExportJobResponse Claim(exportjobs::v1::EntityType type) {
    ClaimExportJobRequest request;
    request.set_worker_id("worker-1");
    request.add_entity_types(type);
    ClaimExportJobResponse response;
    grpc::Status status = workers_->ClaimExportJob(Deadlined().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(response.has_job());
    return response;
  }

  grpc::Status Upload(const std::string& job_id, const std::string& token, const std::string& data,
                      exportjobs::v1::ExportPart* part) {
    auto context = Deadlined();
    exportjobs::v1::UploadExportPartResponse response;
    auto writer = workers_->UploadExportPart(context.get(), &response);
    exportjobs::v1::UploadExportPartRequest message;
    message.mutable_header()->set_job_id(job_id);
    message.mutable_header()->set_lease_token(token);
    message.mutable_header()->set_part_number(1);
    message.mutable_header()->set_record_count(2);
    writer->Write(message);
    message.set_chunk(data);
    writer->Write(message);
    message.mutable_trailer()->set_size_bytes(static_cast<int64_t>(data.size()));
    message.mutable_trailer()->set_sha256(Sha256Hex(data));
    writer->Write(message);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    *part = response.part();
    return status;
  }

  // Returns once every change queued on the committer before it is applied.
  void Barrier() {
    absl::StatusOr<ExportJob> none = AwaitCall<ExportJob>([&](auto done) {
      server_.server().job_manager()->Update(
          "000000000000000000000000", [](JobRecord&) { return absl::OkStatus(); }, std::move(done));
    });
    EXPECT_THAT(none, StatusIs(absl::StatusCode::kNotFound));
  }

  FakeClock clock_{absl::Now()};
  TestServer server_;
  std::unique_ptr<WorkerService::Stub> workers_;
};

TEST_F(MetricsTest, CountsAKnownSequenceOfCallsExactly) {
  constexpr auto kAccounts = exportjobs::v1::ENTITY_TYPE_ACCOUNTS;
  constexpr auto kPeople = exportjobs::v1::ENTITY_TYPE_PEOPLE;
  // Three accounts jobs and one people job; one accounts job cancelled while pending.
  const std::string to_complete = Create(kAccounts).id();
  const std::string to_retry = Create(kAccounts).id();
  const std::string to_cancel = Create(kAccounts).id();
  const std::string to_expire = Create(kPeople).id();
  ExportJob ignored;
  ASSERT_TRUE(server_.Cancel(to_cancel, &ignored).ok());
  ASSERT_TRUE(server_.Delete(to_cancel).ok());
  // Expected domain errors.
  EXPECT_EQ(server_.Get("0123456789abcdef01234567", &ignored).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(server_.Create(CreateExportJobRequest(), &ignored).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // A worker completes one accounts job with one uploaded part of 11 bytes...
  ClaimExportJobResponse first = Claim(kAccounts);
  ASSERT_EQ(first.job().id(), to_complete);
  exportjobs::v1::ExportPart part;
  ASSERT_TRUE(Upload(to_complete, first.lease().token(), "id\n1\n2\nabc\n", &part).ok());
  exportjobs::v1::CompleteExportJobRequest complete;
  complete.set_job_id(to_complete);
  complete.set_lease_token(first.lease().token());
  complete.set_record_count(2);
  *complete.add_parts() = part;
  ASSERT_TRUE(workers_->CompleteExportJob(Deadlined().get(), complete, &ignored).ok());
  // ...fails the next one (retryable: it is retried after a backoff)...
  ClaimExportJobResponse second = Claim(kAccounts);
  ASSERT_EQ(second.job().id(), to_retry);
  exportjobs::v1::FailExportJobRequest fail;
  fail.set_job_id(to_retry);
  fail.set_lease_token(second.lease().token());
  fail.set_error_message("source timed out");
  fail.set_retryable(true);
  ASSERT_TRUE(workers_->FailExportJob(Deadlined().get(), fail, &ignored).ok());
  // ...and lets the lease of the people job expire (retried too).
  ASSERT_EQ(Claim(kPeople).job().id(), to_expire);
  clock_.Advance(absl::Seconds(31));
  server_.server().job_manager()->Tick();
  Barrier();

  Scrape m = Metrics();
  EXPECT_EQ(m[Series("exportd_jobs_created_total", {{"entity_type", "accounts"}})], 3) << m.text;
  EXPECT_EQ(m[Series("exportd_jobs_created_total", {{"entity_type", "people"}})], 1);
  EXPECT_EQ(m[Series("exportd_jobs_created_total", {{"entity_type", "campaigns"}})], 0);
  EXPECT_EQ(m[Series("exportd_job_claims_total", {{"entity_type", "accounts"}})], 2);
  EXPECT_EQ(m[Series("exportd_job_claims_total", {{"entity_type", "people"}})], 1);
  EXPECT_EQ(m[Series("exportd_jobs_completed_total", {{"entity_type", "accounts"}})], 1);
  EXPECT_EQ(m[Series("exportd_jobs_failed_total", {{"entity_type", "accounts"}})], 0);
  EXPECT_EQ(m[Series("exportd_jobs_cancelled_total", {{"entity_type", "accounts"}})], 1);
  EXPECT_EQ(m[Series("exportd_job_retries_total", {{"entity_type", "accounts"}})], 1);
  EXPECT_EQ(m[Series("exportd_job_retries_total", {{"entity_type", "people"}})], 1);
  EXPECT_EQ(m[Series("exportd_job_lease_expiries_total", {{"entity_type", "people"}})], 1);
  EXPECT_EQ(m[Series("exportd_job_lease_expiries_total", {{"entity_type", "accounts"}})], 0);
  EXPECT_EQ(m[Series("exportd_job_releases_total", {{"entity_type", "accounts"}})], 0);
  EXPECT_EQ(m[Series("exportd_jobs_deleted_total", {{"reason", "request"}})], 1);
  EXPECT_EQ(m[Series("exportd_jobs_deleted_total", {{"reason", "retention"}})], 0);
  EXPECT_EQ(m[Series("exportd_parts_uploaded_total")], 1);
  EXPECT_EQ(m[Series("exportd_upload_bytes_total")], 11);
  EXPECT_EQ(m[Series("exportd_export_files_expired_total")], 0);
  EXPECT_EQ(m[Series("exportd_log_lines_dropped_total")], 0);

  // Gauges: two jobs pending (both retried), one completed; the deleted one is gone.
  EXPECT_EQ(m[Series("exportd_jobs", {{"status", "pending"}})], 2);
  EXPECT_EQ(m[Series("exportd_jobs", {{"status", "processing"}})], 0);
  EXPECT_EQ(m[Series("exportd_jobs", {{"status", "completed"}})], 1);
  EXPECT_EQ(m[Series("exportd_jobs", {{"status", "failed"}})], 0);
  EXPECT_EQ(m[Series("exportd_jobs", {{"status", "cancelled"}})], 0);
  EXPECT_EQ(m[Series("exportd_queued_jobs", {{"entity_type", "accounts"}})], 1);
  EXPECT_EQ(m[Series("exportd_queued_jobs", {{"entity_type", "people"}})], 1);
  EXPECT_EQ(m[Series("exportd_queued_jobs", {{"entity_type", "campaigns"}})], 0);
  EXPECT_EQ(m[Series("exportd_watchers")], 0);
  EXPECT_EQ(m[Series("exportd_waiting_claims")], 0);

  // Calls by method and code.
  const auto handled = [&](const char* service, const char* method, const char* code) {
    return m[Series("exportd_grpc_server_handled_total",
                    {{"service", service}, {"method", method}, {"code", code}})];
  };
  EXPECT_EQ(handled(kExportService, "CreateExportJob", "OK"), 4);
  EXPECT_EQ(handled(kExportService, "CreateExportJob", "INVALID_ARGUMENT"), 1);
  EXPECT_EQ(handled(kExportService, "GetExportJob", "NOT_FOUND"), 1);
  EXPECT_EQ(handled(kExportService, "GetExportJob", "OK"), 0);
  EXPECT_EQ(handled(kExportService, "CancelExportJob", "OK"), 1);
  EXPECT_EQ(handled(kExportService, "DeleteExportJob", "OK"), 1);
  EXPECT_EQ(handled(kExportService, "WatchExportJobs", "OK"), 0);
  EXPECT_EQ(handled(kWorkerService, "ClaimExportJob", "OK"), 3);
  EXPECT_EQ(handled(kWorkerService, "UploadExportPart", "OK"), 1);
  EXPECT_EQ(handled(kWorkerService, "CompleteExportJob", "OK"), 1);
  EXPECT_EQ(handled(kWorkerService, "FailExportJob", "OK"), 1);
  EXPECT_EQ(handled(kWorkerService, "ReportProgress", "OK"), 0);
  // A code that never occurred has no series.
  EXPECT_EQ(handled(kExportService, "GetExportJob", "INTERNAL"), -1);
  // The latency histogram counts every call, whatever its code.
  const std::map<std::string, std::string> create = {{"service", kExportService},
                                                     {"method", "CreateExportJob"}};
  EXPECT_EQ(m[Series("exportd_grpc_server_handling_seconds_count", create)], 5);
  auto create_inf = create;
  create_inf["le"] = "+Inf";
  EXPECT_EQ(m[Series("exportd_grpc_server_handling_seconds_bucket", create_inf)], 5);
  // Group commits: at least one per acknowledged change above; each holds at least one request.
  EXPECT_GE(m["exportd_commit_group_requests_count"], 9);
  EXPECT_GE(m["exportd_commit_group_requests_sum"], m["exportd_commit_group_requests_count"]);
  EXPECT_EQ(m["exportd_commit_write_seconds_count"], m["exportd_commit_group_requests_count"]);
}

TEST_F(MetricsTest, EveryMethodOfBothServicesHasItsSeriesFromTheStart) {
  Scrape m = Metrics();
  for (const char* method :
       {"CreateExportJob", "BatchCreateExportJobs", "GetExportJob", "ListExportJobs",
        "CancelExportJob", "DeleteExportJob", "WatchExportJob", "WatchExportJobs",
        "ListExportableFields", "DownloadExport"}) {
    EXPECT_EQ(m[Series("exportd_grpc_server_handling_seconds_count",
                       {{"service", kExportService}, {"method", method}})],
              0)
        << method;
  }
  for (const char* method : {"ClaimExportJob", "ReportProgress", "UploadExportPart",
                             "CompleteExportJob", "FailExportJob", "ReleaseExportJob"}) {
    EXPECT_EQ(m[Series("exportd_grpc_server_handled_total",
                       {{"service", kWorkerService}, {"method", method}, {"code", "OK"}})],
              0)
        << method;
  }
}

TEST_F(MetricsTest, EveryMetricHasHelpAndTypeAndTheProjectPrefix) {
  Scrape m = Metrics();
  ASSERT_FALSE(m.type.empty());
  for (const auto& [name, type] : m.type) {
    EXPECT_TRUE(absl::StartsWith(name, "exportd_")) << name;
    EXPECT_FALSE(m.help[name].empty()) << name;
  }
  EXPECT_EQ(m.type["exportd_jobs"], "gauge");
  EXPECT_EQ(m.type["exportd_jobs_created_total"], "counter");
  EXPECT_EQ(m.type["exportd_grpc_server_handling_seconds"], "histogram");
  EXPECT_EQ(m.type["exportd_commit_write_seconds"], "histogram");
  for (const auto& [series, value] : m.samples) {
    EXPECT_TRUE(absl::StartsWith(series, "exportd_")) << series;
  }
}

TEST_F(MetricsTest, WatchersAndWaitingClaimsAreGauges) {
  // One watch of all jobs, registered once its headers arrive.
  auto watch_context = Deadlined();
  exportjobs::v1::WatchExportJobsRequest watch_request;
  auto reader = server_.stub().WatchExportJobs(watch_context.get(), watch_request);
  reader->WaitForInitialMetadata();
  // One claim waiting for a people job.
  auto claim_context = Deadlined();
  ClaimExportJobRequest claim;
  claim.set_worker_id("waiting");
  claim.add_entity_types(exportjobs::v1::ENTITY_TYPE_PEOPLE);
  claim.mutable_wait()->set_seconds(20);
  ClaimExportJobResponse claimed;
  absl::Notification claim_done;
  workers_->async()->ClaimExportJob(claim_context.get(), &claim, &claimed,
                                    [&](grpc::Status) { claim_done.Notify(); });
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (server_.server().job_manager()->waiting_claims() < 1 && absl::Now() < give_up) {
    std::this_thread::yield();
  }

  Scrape m = Metrics();
  EXPECT_EQ(m["exportd_watchers"], 1) << m.text;
  EXPECT_EQ(m["exportd_waiting_claims"], 1);

  claim_context->TryCancel();
  watch_context->TryCancel();
  claim_done.WaitForNotification();
  reader->Finish();
}

TEST(MetricsRestartTest, JobsByStatusAreCountedAtStartWithoutAFullScanPerScrape) {
  test_support::TempDir dir;
  ServerOptions options;
  options.insecure_no_auth = true;
  options.data_dir = dir.path();
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "127.0.0.1:0";
  std::vector<std::string> ids;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<ExportServer> server, ExportServer::Start(options));
    auto stub = ExportService::NewStub(NewChannel(server->grpc_address()));
    for (int i = 0; i < 11; ++i) {
      ExportJob job;
      ASSERT_TRUE(stub->CreateExportJob(Deadlined().get(), AccountsRequest(), &job).ok());
      ids.push_back(job.id());
    }
    for (int i = 0; i < 4; ++i) {
      exportjobs::v1::CancelExportJobRequest cancel;
      cancel.set_id(ids[i * 2]);
      ExportJob job;
      ASSERT_TRUE(stub->CancelExportJob(Deadlined().get(), cancel, &job).ok());
    }
  }
  // A restart counts the stored jobs in the background, three at a time, while changes commit.
  options.jobs.count_page_size = 3;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ExportServer> server, ExportServer::Start(options));
  auto stub = ExportService::NewStub(NewChannel(server->grpc_address()));
  ExportJob job;
  exportjobs::v1::CancelExportJobRequest cancel;
  cancel.set_id(ids[1]);  // An old job, counted before or after this change.
  ASSERT_TRUE(stub->CancelExportJob(Deadlined().get(), cancel, &job).ok());
  ASSERT_TRUE(stub->CreateExportJob(Deadlined().get(), AccountsRequest(), &job).ok());
  exportjobs::v1::DeleteExportJobRequest remove;
  remove.set_id(ids[0]);
  google::protobuf::Empty empty;
  ASSERT_TRUE(stub->DeleteExportJob(Deadlined().get(), remove, &empty).ok());

  ASSERT_TRUE(server->job_manager()->AwaitCounted(absl::Now() + absl::Seconds(10)));
  Scrape m = Parse(HttpGet(server->http_address(), "/metrics").body);
  // 12 jobs created, 5 cancelled, 1 of those deleted.
  EXPECT_EQ(m[Series("exportd_jobs", {{"status", "pending"}})], 7) << m.text;
  EXPECT_EQ(m[Series("exportd_jobs", {{"status", "cancelled"}})], 4);
  EXPECT_EQ(m[Series("exportd_queued_jobs", {{"entity_type", "accounts"}})], 7);
  // Counters start from zero with the process.
  EXPECT_EQ(m[Series("exportd_jobs_created_total", {{"entity_type", "accounts"}})], 1);
}

}  // namespace
}  // namespace exportd::testing
