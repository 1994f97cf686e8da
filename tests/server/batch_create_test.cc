// BatchCreateExportJobs over real gRPC to a real in-process server (RocksDB in a temporary
// directory): results in request order, per-item errors naming the item, the batch size limit,
// tenancy, request_id idempotency inside a batch and across batch and unary creates, the create
// rate and active-jobs limits applied per item, one group commit per batch, and durability
// across a restart.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "gtest/gtest.h"
#include "server/auth.h"
#include "tests/http/http_client.h"
#include "tests/server/test_server.h"
#include "tests/status_matchers.h"

namespace exportd::testing {
namespace {

using exportjobs::v1::BatchCreateExportJobsRequest;
using exportjobs::v1::BatchCreateExportJobsResponse;
using ::testing::HasSubstr;
using ::testing::StartsWith;

using Result = BatchCreateExportJobsResponse::Result;

grpc::Status Batch(ExportService::Stub& stub, const std::vector<CreateExportJobRequest>& items,
                   BatchCreateExportJobsResponse* response,
                   const std::string& token = std::string()) {
  BatchCreateExportJobsRequest request;
  for (const CreateExportJobRequest& item : items) *request.add_requests() = item;
  auto context = Deadlined();
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  return stub.BatchCreateExportJobs(context.get(), request, response);
}

CreateExportJobRequest WithRequestId(
    const std::string& request_id,
    exportjobs::v1::EntityType type = exportjobs::v1::ENTITY_TYPE_ACCOUNTS) {
  CreateExportJobRequest request = AccountsRequest(type);
  request.set_request_id(request_id);
  return request;
}

// "job" or "error <code>: <message>", so that assertions read like the outcome.
std::string Outcome(const Result& result) {
  if (result.has_job()) return "job";
  if (result.has_error()) {
    return absl::StrCat("error ", result.error().code(), ": ", result.error().message());
  }
  return "(empty)";
}

int64_t Listed(TestServer& server) {
  exportjobs::v1::ListExportJobsRequest request;
  exportjobs::v1::ListExportJobsResponse response;
  EXPECT_TRUE(server.List(request, &response).ok());
  return response.jobs_size();
}

TEST(BatchCreateTest, CreatesOneJobPerItemInRequestOrder) {
  TestServer server;
  const std::vector<CreateExportJobRequest> items = {
      AccountsRequest(), AccountsRequest(exportjobs::v1::ENTITY_TYPE_PEOPLE),
      AccountsRequest(exportjobs::v1::ENTITY_TYPE_CAMPAIGNS)};
  BatchCreateExportJobsResponse response;
  ASSERT_TRUE(Batch(server.stub(), items, &response).ok());
  ASSERT_EQ(response.results_size(), 3);
  std::set<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    const Result& result = response.results(i);
    ASSERT_TRUE(result.has_job()) << i << ": " << Outcome(result);
    EXPECT_EQ(result.job().entity_type(), items[i].entity_type()) << i;
    EXPECT_EQ(result.job().status(), exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
    ids.insert(result.job().id());
    // Stored, with the defaults a unary create applies.
    ExportJob stored;
    ASSERT_TRUE(server.Get(result.job().id(), &stored).ok());
    EXPECT_EQ(stored.SerializeAsString(), result.job().SerializeAsString());
  }
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(response.results(1).job().format(), exportjobs::v1::EXPORT_FORMAT_CSV);
  EXPECT_GT(response.results(1).job().fields_size(), 0);  // the entity's default fields
}

TEST(BatchCreateTest, AnEmptyBatchIsAnsweredWithNoResults) {
  TestServer server;
  BatchCreateExportJobsResponse response;
  ASSERT_TRUE(Batch(server.stub(), {}, &response).ok());
  EXPECT_EQ(response.results_size(), 0);
  EXPECT_EQ(Listed(server), 0);
}

TEST(BatchCreateTest, AFailedItemNamesItsIndexAndFieldAndTheOthersAreCreated) {
  TestServer server;
  CreateExportJobRequest no_entity = AccountsRequest();
  no_entity.set_entity_type(exportjobs::v1::ENTITY_TYPE_UNSPECIFIED);
  CreateExportJobRequest unknown_field = AccountsRequest();
  unknown_field.add_fields("no_such_field");
  CreateExportJobRequest bad_part = AccountsRequest();
  bad_part.set_part_size_bytes(5);
  BatchCreateExportJobsResponse response;
  ASSERT_TRUE(Batch(server.stub(),
                    {AccountsRequest(), no_entity, unknown_field, AccountsRequest(), bad_part},
                    &response)
                  .ok());
  ASSERT_EQ(response.results_size(), 5);
  EXPECT_EQ(Outcome(response.results(0)), "job");
  EXPECT_EQ(Outcome(response.results(3)), "job");
  for (int i : {1, 2, 4}) {
    ASSERT_TRUE(response.results(i).has_error()) << i;
    EXPECT_EQ(response.results(i).error().code(), grpc::StatusCode::INVALID_ARGUMENT) << i;
  }
  EXPECT_THAT(response.results(1).error().message(), StartsWith("requests[1].entity_type: "));
  EXPECT_THAT(response.results(2).error().message(), StartsWith("requests[2].fields[2]: "));
  EXPECT_THAT(response.results(2).error().message(), HasSubstr("no_such_field"));
  EXPECT_THAT(response.results(4).error().message(), StartsWith("requests[4].part_size_bytes: "));
  EXPECT_EQ(Listed(server), 2);
}

TEST(BatchCreateTest, ABatchOverTheLimitIsRefusedNamingRequestsAndCreatesNothing) {
  ServerOptions options;
  options.create_limits.max_batch_creates = 3;
  TestServer server(options);
  BatchCreateExportJobsResponse response;
  const std::vector<CreateExportJobRequest> four(4, AccountsRequest());
  const grpc::Status refused = Batch(server.stub(), four, &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), StartsWith("requests: at most 3 items"));
  EXPECT_THAT(refused.error_message(), HasSubstr("got 4"));
  EXPECT_EQ(Listed(server), 0);

  const std::vector<CreateExportJobRequest> three(3, AccountsRequest());
  ASSERT_TRUE(Batch(server.stub(), three, &response).ok());
  EXPECT_EQ(response.results_size(), 3);
  EXPECT_EQ(Listed(server), 3);
}

TEST(BatchCreateTest, CheckLimitsRefusesABatchLimitBelowOne) {
  ServerOptions options;
  options.create_limits.max_batch_creates = 0;
  EXPECT_THAT(CheckLimits(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_batch_creates")));
}

TEST(BatchCreateTest, RequestIdsGiveOneJobInsideABatchAndAcrossUnaryCreates) {
  TestServer server;
  // Made earlier by a unary create.
  ExportJob unary;
  ASSERT_TRUE(server.Create(WithRequestId("b"), &unary).ok());

  CreateExportJobRequest different = WithRequestId("a");
  different.add_fields("country");
  BatchCreateExportJobsResponse response;
  ASSERT_TRUE(Batch(server.stub(),
                    {WithRequestId("a"), WithRequestId("a"), WithRequestId("b"), different,
                     WithRequestId("c")},
                    &response)
                  .ok());
  ASSERT_EQ(response.results_size(), 5);
  ASSERT_EQ(Outcome(response.results(0)), "job");
  ASSERT_EQ(Outcome(response.results(1)), "job");
  EXPECT_EQ(response.results(1).job().id(), response.results(0).job().id());
  ASSERT_EQ(Outcome(response.results(2)), "job");
  EXPECT_EQ(response.results(2).job().id(), unary.id());
  ASSERT_TRUE(response.results(3).has_error());
  EXPECT_EQ(response.results(3).error().code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(response.results(3).error().message(), StartsWith("requests[3].request_id: "));
  EXPECT_THAT(response.results(3).error().message(), HasSubstr(response.results(0).job().id()));
  ASSERT_EQ(Outcome(response.results(4)), "job");

  // A unary retry of a batch item returns the batch's job.
  ExportJob again;
  ASSERT_TRUE(server.Create(WithRequestId("c"), &again).ok());
  EXPECT_EQ(again.id(), response.results(4).job().id());
  EXPECT_EQ(Listed(server), 3);  // b (unary), a, c
}

// --- Tenancy ---

const std::string kAcme = "acme-client-token-0001";
const std::string kGlobex = "globex-client-token-01";
const std::string kWorker = "worker-token-000000001";

ServerOptions WithTokens() {
  ServerOptions options;
  absl::StatusOr<TokenTable> table =
      TokenTable::Parse(absl::StrCat(kAcme, " ui acme client\n", kGlobex, " ui globex client\n",
                                     kWorker, " worker-1 ops worker\n"));
  EXPECT_OK(table.status());
  options.auth = Authenticator::FromTable(*std::move(table));
  return options;
}

TEST(BatchCreateTenancyTest, JobsBelongToTheCallersTenantAndRequestIdsArePerTenant) {
  TestServer server(WithTokens());
  BatchCreateExportJobsResponse acme;
  ASSERT_TRUE(Batch(server.stub(), {WithRequestId("r1"), AccountsRequest()}, &acme, kAcme).ok());
  ASSERT_EQ(Outcome(acme.results(0)), "job");
  ASSERT_EQ(Outcome(acme.results(1)), "job");

  // Globex can't see acme's jobs, and its r1 is a job of its own.
  for (const Result& result : acme.results()) {
    exportjobs::v1::GetExportJobRequest get;
    get.set_id(result.job().id());
    ExportJob job;
    auto context = Deadlined();
    context->AddMetadata("authorization", "Bearer " + kGlobex);
    EXPECT_EQ(server.stub().GetExportJob(context.get(), get, &job).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  BatchCreateExportJobsResponse globex;
  ASSERT_TRUE(Batch(server.stub(), {WithRequestId("r1")}, &globex, kGlobex).ok());
  ASSERT_EQ(Outcome(globex.results(0)), "job");
  EXPECT_NE(globex.results(0).job().id(), acme.results(0).job().id());

  // Acme's retry of r1 in another batch is acme's job.
  BatchCreateExportJobsResponse retry;
  ASSERT_TRUE(Batch(server.stub(), {WithRequestId("r1")}, &retry, kAcme).ok());
  ASSERT_EQ(Outcome(retry.results(0)), "job");
  EXPECT_EQ(retry.results(0).job().id(), acme.results(0).job().id());
}

TEST(BatchCreateTenancyTest, CallersWhoMayNotCreateAreRefusedAsAWhole) {
  TestServer server(WithTokens());
  BatchCreateExportJobsResponse response;
  const grpc::Status worker = Batch(server.stub(), {AccountsRequest()}, &response, kWorker);
  EXPECT_EQ(worker.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(worker.error_message(), HasSubstr("BatchCreateExportJobs"));
  const grpc::Status anonymous = Batch(server.stub(), {AccountsRequest()}, &response);
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// --- Limits, per item ---

TEST(BatchCreateLimitsTest, EachValidItemTakesATokenOfTheCreateRate) {
  FakeClock clock;
  ServerOptions options;
  options.clock = &clock;
  options.create_limits.create_rate_per_tenant = 10;
  options.create_limits.create_burst_per_tenant = 3;
  TestServer server(options);
  CreateExportJobRequest bad = AccountsRequest();
  bad.add_fields("no_such_field");
  LogCapture capture;
  BatchCreateExportJobsResponse response;
  ASSERT_TRUE(Batch(server.stub(),
                    {AccountsRequest(), bad, AccountsRequest(), AccountsRequest(),
                     AccountsRequest(), AccountsRequest()},
                    &response)
                  .ok());
  ASSERT_EQ(response.results_size(), 6);
  // The invalid item takes no token: items 0, 2 and 3 use the burst of 3.
  EXPECT_EQ(Outcome(response.results(0)), "job");
  EXPECT_EQ(response.results(1).error().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Outcome(response.results(2)), "job");
  EXPECT_EQ(Outcome(response.results(3)), "job");
  for (int i : {4, 5}) {
    const Result& result = response.results(i);
    ASSERT_TRUE(result.has_error()) << i;
    EXPECT_EQ(result.error().code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(result.error().message(),
                StartsWith(absl::StrCat("requests[", i, "].create rate of tenant:(default)")));
    // The same details as a refused unary create: how long to wait, and which limit.
    bool retry_info = false;
    for (const google::protobuf::Any& any : result.error().details()) {
      google::rpc::RetryInfo retry;
      if (any.UnpackTo(&retry)) {
        retry_info = true;
        EXPECT_EQ(retry.retry_delay().nanos(), 100'000'000);
      }
    }
    EXPECT_TRUE(retry_info) << i;
  }
  EXPECT_EQ(Listed(server), 3);
  // Logged as refused unary creates are (the invalid item, a domain error, is not).
  const std::vector<nlohmann::ordered_json> errors = capture.Events("rpc.error");
  ASSERT_EQ(errors.size(), 2u);
  for (size_t k = 0; k < errors.size(); ++k) {
    EXPECT_EQ(errors[k]["method"], "BatchCreateExportJobs");
    EXPECT_EQ(errors[k]["code"], "RESOURCE_EXHAUSTED");
    EXPECT_THAT(errors[k]["message"].get<std::string>(),
                StartsWith(absl::StrCat("requests[", 4 + k, "].create rate")));
  }
}

TEST(BatchCreateLimitsTest, EachNewJobCountsTowardTheActiveJobsLimit) {
  ServerOptions options;
  options.jobs.max_active_jobs_per_tenant = 2;
  TestServer server(options);
  BatchCreateExportJobsResponse response;
  // Item 1 repeats item 0 (the same job, not a new active one); item 2 is the second job.
  ASSERT_TRUE(Batch(server.stub(),
                    {WithRequestId("x"), WithRequestId("x"), AccountsRequest(), AccountsRequest()},
                    &response)
                  .ok());
  ASSERT_EQ(response.results_size(), 4);
  EXPECT_EQ(Outcome(response.results(0)), "job");
  EXPECT_EQ(Outcome(response.results(1)), "job");
  EXPECT_EQ(Outcome(response.results(2)), "job");
  ASSERT_TRUE(response.results(3).has_error());
  EXPECT_EQ(response.results(3).error().code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(response.results(3).error().message(),
              StartsWith("requests[3].tenant:(default) has 2 active"));
  // And a unary create after the batch sees the batch's jobs.
  ExportJob job;
  EXPECT_EQ(server.Create(AccountsRequest(), &job).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

// --- One group commit, durably ---

double Sample(const std::string& text, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, series + " ")) {
      double value = 0;
      EXPECT_TRUE(absl::SimpleAtod(line.substr(series.size() + 1), &value)) << line;
      return value;
    }
  }
  return -1;
}

TEST(BatchCreateTest, TheItemsOfABatchShareOneGroupCommit) {
  TestServer server;
  const std::vector<CreateExportJobRequest> items(20, AccountsRequest());
  BatchCreateExportJobsResponse response;
  ASSERT_TRUE(Batch(server.stub(), items, &response).ok());
  const Reply reply = HttpGet(server.server().http_address(), "/metrics");
  ASSERT_EQ(reply.status, 200) << reply.error;
  // One synced write for the 20 creates, and each item counts as a request of that group.
  EXPECT_EQ(Sample(reply.body, "exportd_commit_group_requests_count"), 1);
  EXPECT_EQ(Sample(reply.body, "exportd_commit_group_requests_sum"), 20);
  EXPECT_EQ(Sample(reply.body, "exportd_jobs_created_total{entity_type=\"accounts\"}"), 20);
}

TEST(BatchCreateTest, EveryAcknowledgedItemIsThereAfterARestart) {
  test_support::TempDir dir;
  ServerOptions options;
  options.data_dir = dir.path();
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "127.0.0.1:0";
  options.insecure_no_auth = true;
  std::vector<ExportJob> acknowledged;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<ExportServer> server, ExportServer::Start(options));
    auto stub = ExportService::NewStub(NewChannel(server->grpc_address()));
    for (int batch = 0; batch < 3; ++batch) {
      std::vector<CreateExportJobRequest> items;
      for (int i = 0; i < 50; ++i) {
        items.push_back(WithRequestId(absl::StrCat("b", batch, "-", i)));
      }
      BatchCreateExportJobsResponse response;
      ASSERT_TRUE(Batch(*stub, items, &response).ok());
      for (const Result& result : response.results()) {
        ASSERT_TRUE(result.has_job()) << Outcome(result);
        acknowledged.push_back(result.job());
      }
    }
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ExportServer> server, ExportServer::Start(options));
  auto stub = ExportService::NewStub(NewChannel(server->grpc_address()));
  ASSERT_EQ(acknowledged.size(), 150u);
  for (const ExportJob& job : acknowledged) {
    exportjobs::v1::GetExportJobRequest get;
    get.set_id(job.id());
    ExportJob stored;
    ASSERT_TRUE(stub->GetExportJob(Deadlined().get(), get, &stored).ok()) << job.id();
    EXPECT_EQ(stored.SerializeAsString(), job.SerializeAsString());
  }
}

}  // namespace
}  // namespace exportd::testing
