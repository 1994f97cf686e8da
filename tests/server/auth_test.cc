// Authentication, roles and tenant isolation of a real in-process export-server over loopback
// gRPC and its HTTP port, plus the tokens file parser (server/auth.h).
#include "server/auth.h"

#include <httplib.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/test_server.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

// Tokens of the test table: two client tenants, a worker and an admin (of tenant "ops").
const std::string kAcme = "acme-client-token-0001";
const std::string kAcme2 = "acme-client-token-0002";
const std::string kGlobex = "globex-client-token-01";
const std::string kWorker = "worker-token-000000001";
const std::string kAdmin = "admin-token-0000000001";

const std::string kTable = absl::StrCat(  //
    "# test tokens\n",                    //
    "\n",                                 //
    kAcme, " ui acme client\n",           //
    kAcme2, "\tbatch\tacme\tclient\n",    //
    kGlobex, " ui globex client\n",       //
    "  ", kWorker, " worker-1 ops worker  \n", kAdmin, " root ops admin\n");

// --- The tokens file ---

TEST(TokenTableTest, ParsesEntriesCommentsAndBlankLines) {
  ASSERT_OK_AND_ASSIGN(TokenTable table, TokenTable::Parse(kTable));
  EXPECT_EQ(table.size(), 5u);
  const Principal* acme = table.Find(kAcme);
  ASSERT_NE(acme, nullptr);
  EXPECT_EQ(acme->name, "ui");
  EXPECT_EQ(acme->tenant, "acme");
  EXPECT_EQ(acme->role, Role::kClient);
  const Principal* batch = table.Find(kAcme2);
  ASSERT_NE(batch, nullptr);
  EXPECT_EQ(batch->name, "batch");
  ASSERT_NE(table.Find(kWorker), nullptr);
  EXPECT_EQ(table.Find(kWorker)->role, Role::kWorker);
  EXPECT_EQ(table.Find(kAdmin)->role, Role::kAdmin);
  EXPECT_EQ(table.Find(kAdmin)->scope(), kAllTenants);
  EXPECT_EQ(table.Find(kAcme)->scope(), "acme");
  EXPECT_EQ(table.Find("no-such-token-000000"), nullptr);
  EXPECT_EQ(table.Find(kAcme.substr(1)), nullptr);
}

TEST(TokenTableTest, RefusesBadLinesNamingTheLineAndTheReason) {
  const std::string good = "good-token-0000000001 p t client\n";
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {good + "short p t client\n", "line 2: token: 5 characters; at least 16"},
      {good + "good-token-0000000001 q u worker\n", "line 2: token: duplicate"},
      {"# c\n\ngood-token-0000000002 p t superuser\n", "line 3: role: \"superuser\""},
      {"good-token-0000000002 p t/x client\n", "line 1: tenant: \"t/x\""},
      {"good-token-0000000002 p * admin\n", "line 1: tenant: \"*\""},
      {"good-token-0000000002 p t\n", "line 1: expected 4 fields"},
      {"good-token-0000000002 p t client extra\n", "line 1: expected 4 fields"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(TokenTable::Parse(c.text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.text;
  }
  // The token is never echoed back.
  EXPECT_THAT(TokenTable::Parse(good + good).status().message(),
              Not(HasSubstr("good-token-0000000001")));
}

TEST(AuthenticatorTest, AuthenticatesBearerHeaders) {
  ASSERT_OK_AND_ASSIGN(TokenTable table, TokenTable::Parse(kTable));
  std::unique_ptr<Authenticator> auth = Authenticator::FromTable(std::move(table));
  ASSERT_OK_AND_ASSIGN(Principal acme, auth->Authenticate("Bearer " + kAcme));
  EXPECT_EQ(acme.tenant, "acme");
  EXPECT_OK(auth->Authenticate("bearer " + kAcme));  // The scheme is case-insensitive.
  EXPECT_THAT(auth->Authenticate(std::nullopt),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("missing")));
  for (const std::string& malformed : std::vector<std::string>{
           "", "Bearer", "Bearer ", kAcme, "Basic " + kAcme, "Token " + kAcme}) {
    EXPECT_THAT(auth->Authenticate(malformed),
                StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("malformed")))
        << malformed;
  }
  EXPECT_THAT(auth->Authenticate("Bearer not-a-known-token-1234"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown token")));
}

TEST(AuthenticatorTest, ReloadSwapsTheTableAndKeepsTheOldOneOnError) {
  test_support::TempDir dir;
  const std::string path = dir.path() + "/tokens";
  const auto write = [&](const std::string& text) {
    std::ofstream out(path, std::ios::trunc);
    out << text;
  };
  write(kAcme + " ui acme client\n");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Authenticator> auth, Authenticator::FromFile(path));
  EXPECT_OK(auth->Authenticate("Bearer " + kAcme));
  EXPECT_THAT(auth->Authenticate("Bearer " + kGlobex),
              StatusIs(absl::StatusCode::kUnauthenticated));

  write(kGlobex + " ui globex client\n");
  ASSERT_OK(auth->Reload());
  EXPECT_OK(auth->Authenticate("Bearer " + kGlobex));
  EXPECT_THAT(auth->Authenticate("Bearer " + kAcme), StatusIs(absl::StatusCode::kUnauthenticated));

  write(kAcme + " ui acme client\nshort x y client\n");
  EXPECT_THAT(auth->Reload(), StatusIs(absl::StatusCode::kInvalidArgument,
                                       AllOf(HasSubstr(path), HasSubstr("line 2"))));
  EXPECT_OK(auth->Authenticate("Bearer " + kGlobex));
  EXPECT_THAT(auth->Authenticate("Bearer " + kAcme), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(auth->token_count(), 1u);

  EXPECT_THAT(Authenticator::FromFile(dir.path() + "/missing"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("tokens_file")));
}

TEST(AuthorizeTest, RolesAndWhatTheyMayCall) {
  const Principal client{"ui", "acme", Role::kClient};
  const Principal worker{"w", "ops", Role::kWorker};
  const Principal admin{"root", "ops", Role::kAdmin};
  EXPECT_OK(Authorize(client, Access::kJobs, "m"));
  EXPECT_OK(Authorize(admin, Access::kJobs, "m"));
  EXPECT_OK(Authorize(worker, Access::kWorker, "m"));
  EXPECT_OK(Authorize(admin, Access::kWorker, "m"));
  EXPECT_OK(Authorize(worker, Access::kAnyRole, "m"));
  EXPECT_OK(Authorize(admin, Access::kAdminOnly, "m"));
  EXPECT_THAT(Authorize(worker, Access::kJobs, "svc/Get"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("role worker"), HasSubstr("svc/Get"))));
  EXPECT_THAT(Authorize(client, Access::kWorker, "svc/Claim"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("role client"), HasSubstr("svc/Claim"))));
  EXPECT_THAT(Authorize(client, Access::kAdminOnly, "GET /metrics"),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

// --- A server with authentication ---

std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
  auto context = Deadlined();
  context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

ServerOptions WithTokens() {
  ServerOptions options;
  absl::StatusOr<TokenTable> table = TokenTable::Parse(kTable);
  EXPECT_OK(table.status());
  options.auth = Authenticator::FromTable(*std::move(table));
  return options;
}

class AuthServerTest : public ::testing::Test {
 protected:
  AuthServerTest() : server_(WithTokens()) {}

  grpc::Status Create(const std::string& token, ExportJob* job,
                      const std::string& request_id = "") {
    CreateExportJobRequest request = AccountsRequest();
    request.set_request_id(request_id);
    return server_.stub().CreateExportJob(As(token).get(), request, job);
  }
  grpc::Status Get(const std::string& token, const std::string& id, ExportJob* job) {
    exportjobs::v1::GetExportJobRequest request;
    request.set_id(id);
    return server_.stub().GetExportJob(As(token).get(), request, job);
  }
  grpc::Status Cancel(const std::string& token, const std::string& id) {
    exportjobs::v1::CancelExportJobRequest request;
    request.set_id(id);
    ExportJob job;
    return server_.stub().CancelExportJob(As(token).get(), request, &job);
  }
  grpc::Status Delete(const std::string& token, const std::string& id) {
    exportjobs::v1::DeleteExportJobRequest request;
    request.set_id(id);
    google::protobuf::Empty empty;
    return server_.stub().DeleteExportJob(As(token).get(), request, &empty);
  }
  // The ids of every job `token` lists, following page tokens.
  std::set<std::string> ListIds(const std::string& token, int page_size = 0) {
    std::set<std::string> ids;
    exportjobs::v1::ListExportJobsRequest request;
    request.set_page_size(page_size);
    for (int page = 0; page < 100; ++page) {
      exportjobs::v1::ListExportJobsResponse response;
      grpc::Status status = server_.stub().ListExportJobs(As(token).get(), request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      for (const ExportJob& job : response.jobs()) ids.insert(job.id());
      if (response.next_page_token().empty()) break;
      request.set_page_token(response.next_page_token());
    }
    return ids;
  }
  // The first message (or the error) of WatchExportJob.
  grpc::Status WatchFirst(const std::string& token, const std::string& id) {
    exportjobs::v1::WatchExportJobRequest request;
    request.set_id(id);
    auto context = As(token);
    auto reader = server_.stub().WatchExportJob(context.get(), request);
    exportjobs::v1::ExportJobEvent event;
    if (reader->Read(&event)) {
      context->TryCancel();
      reader->Finish().IgnoreError();
      return grpc::Status::OK;
    }
    return reader->Finish();
  }
  grpc::Status Download(const std::string& token, const std::string& id) {
    exportjobs::v1::DownloadExportRequest request;
    request.set_id(id);
    auto context = As(token);
    auto reader = server_.stub().DownloadExport(context.get(), request);
    exportjobs::v1::DownloadExportResponse chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish();
  }

  TestServer server_;
};

TEST_F(AuthServerTest, MissingMalformedAndUnknownTokensAreUnauthenticated) {
  ExportJob job;
  grpc::Status none = server_.stub().CreateExportJob(Deadlined().get(), AccountsRequest(), &job);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(none.error_message(), HasSubstr("authorization: missing"));

  auto malformed = Deadlined();
  malformed->AddMetadata("authorization", "Basic " + kAcme);
  grpc::Status basic = server_.stub().CreateExportJob(malformed.get(), AccountsRequest(), &job);
  EXPECT_EQ(basic.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(basic.error_message(), HasSubstr("malformed"));

  grpc::Status unknown = Create("not-a-known-token-0000", &job);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(unknown.error_message(), HasSubstr("unknown token"));

  // Authentication comes before validation: an invalid request without a token learns nothing.
  exportjobs::v1::GetExportJobRequest bad_id;
  bad_id.set_id("not an id");
  EXPECT_EQ(server_.stub().GetExportJob(Deadlined().get(), bad_id, &job).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // Streams too.
  EXPECT_EQ(WatchFirst("not-a-known-token-0000", "0005f0a1b2c3d4e5a1b2c3d4").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Download("not-a-known-token-0000", "0005f0a1b2c3d4e5a1b2c3d4").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // Nothing was created.
  EXPECT_THAT(ListIds(kAdmin), IsEmpty());
}

TEST_F(AuthServerTest, AWorkerCannotCallJobCallsAndAClientCannotCallTheWorkerService) {
  ExportJob job;
  grpc::Status worker_create = Create(kWorker, &job);
  EXPECT_EQ(worker_create.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(
      worker_create.error_message(),
      AllOf(HasSubstr("role worker"), HasSubstr("exportjobs.v1.ExportService/CreateExportJob")));
  EXPECT_EQ(WatchFirst(kWorker, "0005f0a1b2c3d4e5a1b2c3d4").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Download(kWorker, "0005f0a1b2c3d4e5a1b2c3d4").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // ListExportableFields is open to every role.
  exportjobs::v1::ListExportableFieldsRequest fields;
  fields.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  exportjobs::v1::ListExportableFieldsResponse catalog;
  EXPECT_TRUE(server_.stub().ListExportableFields(As(kWorker).get(), fields, &catalog).ok());

  auto workers = exportjobs::v1::WorkerService::NewStub(NewChannel(server_.address(), 1));
  exportjobs::v1::ClaimExportJobRequest claim;
  claim.set_worker_id("w1");
  exportjobs::v1::ClaimExportJobResponse claimed;
  grpc::Status client_claim = workers->ClaimExportJob(As(kAcme).get(), claim, &claimed);
  EXPECT_EQ(client_claim.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(
      client_claim.error_message(),
      AllOf(HasSubstr("role client"), HasSubstr("exportjobs.v1.WorkerService/ClaimExportJob")));
  EXPECT_EQ(workers->ClaimExportJob(Deadlined().get(), claim, &claimed).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // Uploads (a client stream) check before reading anything.
  exportjobs::v1::UploadExportPartResponse uploaded;
  auto upload_context = As(kAcme);
  auto upload = workers->UploadExportPart(upload_context.get(), &uploaded);
  upload->WritesDone();
  grpc::Status client_upload = upload->Finish();
  EXPECT_EQ(client_upload.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(client_upload.error_message(), HasSubstr("WorkerService/UploadExportPart"));

  // The worker and the admin may claim (nothing is queued: an empty answer).
  EXPECT_TRUE(workers->ClaimExportJob(As(kWorker).get(), claim, &claimed).ok());
  EXPECT_TRUE(workers->ClaimExportJob(As(kAdmin).get(), claim, &claimed).ok());
}

TEST_F(AuthServerTest, AnotherTenantsJobIsNotFoundEverywhere) {
  ExportJob acme_job;
  ASSERT_TRUE(Create(kAcme, &acme_job).ok());
  const std::string id = acme_job.id();

  ExportJob seen;
  // Another client of the same tenant sees it.
  EXPECT_TRUE(Get(kAcme2, id, &seen).ok());

  const grpc::StatusCode kNotFound = grpc::StatusCode::NOT_FOUND;
  EXPECT_EQ(Get(kGlobex, id, &seen).error_code(), kNotFound);
  EXPECT_EQ(WatchFirst(kGlobex, id).error_code(), kNotFound);
  EXPECT_EQ(Cancel(kGlobex, id).error_code(), kNotFound);
  EXPECT_EQ(Delete(kGlobex, id).error_code(), kNotFound);
  EXPECT_EQ(Download(kGlobex, id).error_code(), kNotFound);
  // The owner's download of the pending job is refused for its state, not its existence.
  EXPECT_EQ(Download(kAcme, id).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(ListIds(kGlobex), IsEmpty());
  EXPECT_THAT(ListIds(kAcme), UnorderedElementsAre(id));

  // Nothing globex did changed the job.
  ASSERT_TRUE(Get(kAcme, id, &seen).ok());
  EXPECT_EQ(seen.status(), exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  EXPECT_EQ(seen.revision(), acme_job.revision());
}

TEST_F(AuthServerTest, WatchExportJobsShowsOnlyTheCallersTenant) {
  exportjobs::v1::WatchExportJobsRequest request;
  auto context = As(kGlobex);
  auto reader = server_.stub().WatchExportJobs(context.get(), request);
  reader->WaitForInitialMetadata();  // Sent once the watch is registered.
  // An event of globex's own job marks the end: every acme event was published before it.
  ExportJob acme_job;
  ExportJob globex_job;
  exportjobs::v1::ExportJobEvent event;
  ASSERT_TRUE(Create(kAcme, &acme_job).ok());
  ASSERT_TRUE(Cancel(kAcme, acme_job.id()).ok());
  ASSERT_TRUE(Create(kGlobex, &globex_job).ok());
  std::vector<std::string> seen;
  while (reader->Read(&event)) {
    seen.push_back(event.job().id());
    if (event.job().id() == globex_job.id()) break;
  }
  EXPECT_THAT(seen, ::testing::ElementsAre(globex_job.id()));
  context->TryCancel();
  reader->Finish().IgnoreError();

  // The admin's watch sees every tenant.
  auto admin_context = As(kAdmin);
  auto admin_reader = server_.stub().WatchExportJobs(admin_context.get(), request);
  admin_reader->WaitForInitialMetadata();
  ExportJob probe;
  ASSERT_TRUE(Create(kAcme, &probe).ok());
  ASSERT_TRUE(admin_reader->Read(&event));
  EXPECT_EQ(event.job().id(), probe.id());
  admin_context->TryCancel();
  admin_reader->Finish().IgnoreError();
}

TEST_F(AuthServerTest, RequestIdsArePerTenant) {
  ExportJob acme_first;
  ExportJob acme_again;
  ExportJob globex_job;
  ASSERT_TRUE(Create(kAcme, &acme_first, "req-1").ok());
  ASSERT_TRUE(Create(kAcme2, &acme_again, "req-1").ok());
  ASSERT_TRUE(Create(kGlobex, &globex_job, "req-1").ok());
  EXPECT_EQ(acme_again.id(), acme_first.id());
  EXPECT_NE(globex_job.id(), acme_first.id());
  EXPECT_THAT(ListIds(kAcme), UnorderedElementsAre(acme_first.id()));
  EXPECT_THAT(ListIds(kGlobex), UnorderedElementsAre(globex_job.id()));
}

TEST_F(AuthServerTest, AnAdminSeesAndActsOnEveryTenant) {
  ExportJob acme_job;
  ExportJob globex_job;
  ExportJob admin_job;
  ASSERT_TRUE(Create(kAcme, &acme_job).ok());
  ASSERT_TRUE(Create(kGlobex, &globex_job).ok());
  ASSERT_TRUE(Create(kAdmin, &admin_job).ok());
  EXPECT_THAT(ListIds(kAdmin),
              UnorderedElementsAre(acme_job.id(), globex_job.id(), admin_job.id()));
  // Paged, one job a page.
  EXPECT_THAT(ListIds(kAdmin, 1),
              UnorderedElementsAre(acme_job.id(), globex_job.id(), admin_job.id()));
  ExportJob seen;
  EXPECT_TRUE(Get(kAdmin, acme_job.id(), &seen).ok());
  EXPECT_TRUE(WatchFirst(kAdmin, globex_job.id()).ok());
  EXPECT_TRUE(Cancel(kAdmin, globex_job.id()).ok());
  EXPECT_TRUE(Delete(kAdmin, globex_job.id()).ok());
  EXPECT_EQ(Get(kGlobex, globex_job.id(), &seen).error_code(), grpc::StatusCode::NOT_FOUND);
  // The admin's own job is in its own tenant ("ops"), which no client here belongs to.
  EXPECT_EQ(Get(kAcme, admin_job.id(), &seen).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(ListIds(kAcme), UnorderedElementsAre(acme_job.id()));
}

TEST_F(AuthServerTest, ListPagesOfOneTenantAmongManyJobs) {
  // Many jobs of one tenant, few of another: every page of the small tenant is complete.
  std::set<std::string> globex;
  for (int i = 0; i < 30; ++i) {
    ExportJob job;
    ASSERT_TRUE(Create(i % 10 == 0 ? kGlobex : kAcme, &job).ok());
    if (i % 10 == 0) globex.insert(job.id());
  }
  EXPECT_EQ(ListIds(kGlobex, 1), globex);
  EXPECT_EQ(ListIds(kAcme, 7).size(), 27u);
}

// --- The HTTP port ---

struct HttpReply {
  int status = -1;
  std::string body;
  httplib::Headers headers;
};

HttpReply HttpGetWith(const std::string& address, const std::string& path,
                      const std::optional<std::string>& authorization) {
  const size_t colon = address.rfind(':');
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(colon + 1), &port)) << address;
  httplib::Client client(address.substr(0, colon), port);
  client.set_connection_timeout(5);
  client.set_read_timeout(20);
  httplib::Headers headers;
  if (authorization) headers.emplace("Authorization", *authorization);
  httplib::Result result = client.Get(path.c_str(), headers);
  HttpReply reply;
  if (!result) return reply;
  reply.status = result->status;
  reply.body = result->body;
  reply.headers = result->headers;
  return reply;
}

TEST_F(AuthServerTest, HttpJsonViewNeedsATokenAndShowsTheCallersTenant) {
  const std::string http = server_.server().http_address();
  ExportJob acme_job;
  ExportJob globex_job;
  ASSERT_TRUE(Create(kAcme, &acme_job).ok());
  ASSERT_TRUE(Create(kGlobex, &globex_job).ok());

  for (const std::optional<std::string>& bad :
       {std::optional<std::string>(), std::optional<std::string>("Bearer nope-nope-nope-nope"),
        std::optional<std::string>("Basic " + kAcme)}) {
    HttpReply reply = HttpGetWith(http, "/v1/export-jobs", bad);
    EXPECT_EQ(reply.status, 401);
    auto challenge = reply.headers.find("WWW-Authenticate");
    ASSERT_NE(challenge, reply.headers.end());
    EXPECT_EQ(challenge->second, "Bearer");
    EXPECT_THAT(reply.body, HasSubstr("\"status\":\"UNAUTHENTICATED\""));
  }
  HttpReply worker = HttpGetWith(http, "/v1/export-jobs", "Bearer " + kWorker);
  EXPECT_EQ(worker.status, 403);
  EXPECT_THAT(worker.body, HasSubstr("\"status\":\"PERMISSION_DENIED\""));

  HttpReply acme = HttpGetWith(http, "/v1/export-jobs", "Bearer " + kAcme);
  ASSERT_EQ(acme.status, 200) << acme.body;
  EXPECT_THAT(acme.body, HasSubstr(acme_job.id()));
  EXPECT_THAT(acme.body, Not(HasSubstr(globex_job.id())));
  EXPECT_EQ(HttpGetWith(http, "/v1/export-jobs/" + globex_job.id(), "Bearer " + kAcme).status, 404);
  EXPECT_EQ(HttpGetWith(http, "/v1/export-jobs/" + acme_job.id(), "Bearer " + kAcme).status, 200);
  EXPECT_EQ(HttpGetWith(http, "/v1/export-jobs/" + acme_job.id(), std::nullopt).status, 401);

  HttpReply admin = HttpGetWith(http, "/v1/export-jobs", "Bearer " + kAdmin);
  ASSERT_EQ(admin.status, 200);
  EXPECT_THAT(admin.body, AllOf(HasSubstr(acme_job.id()), HasSubstr(globex_job.id())));
}

TEST_F(AuthServerTest, HttpMetricsNeedAnAdminAndProbesNeedNoToken) {
  const std::string http = server_.server().http_address();
  EXPECT_EQ(HttpGetWith(http, "/metrics", std::nullopt).status, 401);
  EXPECT_EQ(HttpGetWith(http, "/metrics", "Bearer " + kAcme).status, 403);
  EXPECT_EQ(HttpGetWith(http, "/metrics", "Bearer " + kWorker).status, 403);
  HttpReply admin = HttpGetWith(http, "/metrics", "Bearer " + kAdmin);
  EXPECT_EQ(admin.status, 200);
  EXPECT_THAT(admin.body, HasSubstr("exportd_"));
  EXPECT_EQ(HttpGetWith(http, "/healthz", std::nullopt).status, 200);
  EXPECT_EQ(HttpGetWith(http, "/readyz", std::nullopt).status, 200);
}

TEST(AuthStartTest, AServerWithoutAuthAndWithoutInsecureNoAuthRefusesToStart) {
  test_support::TempDir dir;
  ServerOptions options;
  options.data_dir = dir.path();
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "127.0.0.1:0";
  EXPECT_THAT(ExportServer::Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("tokens_file"), HasSubstr("insecure_no_auth"))));
}

}  // namespace
}  // namespace exportd::testing
