// The JSON view of the jobs on the HTTP port, against a real in-process export-server (RocksDB in
// a temporary directory, gRPC and HTTP on loopback): every route, every error path, paging, and
// the output checked against the ExportJob JSON schema by tests/node/validate_export_job.js.
#include "server/job_view.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "common/job_json.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/http_server.h"
#include "storage/rocksdb_job_store.h"
#include "tests/http/http_client.h"
#include "tests/server/test_server.h"
#include "tests/status_matchers.h"

extern char** environ;

namespace exportd::testing {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Json = nlohmann::json;

constexpr auto kCancelled = exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED;

// The error object of a JSON error body; null when the body is not one.
Json ErrorOf(const Reply& reply) {
  Json body = Json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("error") || body.size() != 1) return nullptr;
  return body["error"];
}

class JobViewTest : public ::testing::Test {
 protected:
  Reply Get(const std::string& path) { return HttpGet(server_.server().http_address(), path); }
  Reply Send(const std::string& method, const std::string& path) {
    return Fetch(server_.server().http_address(), method, path, "{}");
  }

  ExportJob Create(exportjobs::v1::EntityType type = exportjobs::v1::ENTITY_TYPE_ACCOUNTS) {
    ExportJob job;
    grpc::Status status = server_.Create(AccountsRequest(type), &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  ExportJob GrpcGet(const std::string& id) {
    ExportJob job;
    grpc::Status status = server_.Get(id, &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  // The ids of a list body, in order; fails the test when the body is not a list.
  static std::vector<std::string> Ids(const Reply& reply) {
    std::vector<std::string> ids;
    Json body = Json::parse(reply.body, nullptr, false);
    EXPECT_TRUE(body.is_object() && body.contains("export_jobs")) << reply.body;
    if (!body.is_object() || !body.contains("export_jobs")) return ids;
    for (const Json& job : body["export_jobs"]) ids.push_back(job["id"].get<std::string>());
    return ids;
  }

  static std::string TokenOf(const Reply& reply) {
    Json body = Json::parse(reply.body, nullptr, false);
    if (!body.is_object() || !body.contains("next_page_token")) return "";
    return body["next_page_token"].get<std::string>();
  }

  // Asserts a JSON error answer with this HTTP status, status name and message.
  static void ExpectError(const Reply& reply, int code, const std::string& status,
                          const ::testing::Matcher<std::string>& message) {
    EXPECT_EQ(reply.status, code) << reply.error << reply.body;
    EXPECT_EQ(reply.Header("Content-Type"), "application/json");
    Json error = ErrorOf(reply);
    ASSERT_TRUE(error.is_object()) << reply.body;
    EXPECT_EQ(error.size(), 3u) << reply.body;
    EXPECT_EQ(error["code"], code);
    EXPECT_EQ(error["status"], status);
    ASSERT_TRUE(error["message"].is_string()) << reply.body;
    EXPECT_THAT(error["message"].get<std::string>(), message);
  }

  TestServer server_;
};

TEST_F(JobViewTest, OneJobIsTheJsonFormOfTheGrpcJob) {
  ExportJob created = Create();
  Reply reply = Get("/v1/export-jobs/" + created.id());
  ASSERT_EQ(reply.status, 200) << reply.error << reply.body;
  EXPECT_EQ(reply.Header("Content-Type"), "application/json");
  EXPECT_EQ(reply.Header("Cache-Control"), "no-store");
  EXPECT_EQ(reply.body, RenderJobJson(GrpcGet(created.id())) + "\n");
}

TEST_F(JobViewTest, HeadOfAJobHasNoBody) {
  ExportJob created = Create();
  Reply get = Get("/v1/export-jobs/" + created.id());
  Reply head = Send("HEAD", "/v1/export-jobs/" + created.id());
  EXPECT_EQ(head.status, 200) << head.error;
  EXPECT_EQ(head.body, "");
  EXPECT_EQ(head.Header("Content-Length"), absl::StrCat(get.body.size()));
  EXPECT_EQ(Send("HEAD", "/v1/export-jobs").status, 200);
}

TEST_F(JobViewTest, AnUnknownJobIsNotFound) {
  const std::string id = Create().id();
  ExportJob cancelled;
  ASSERT_TRUE(server_.Cancel(id, &cancelled).ok());
  ASSERT_TRUE(server_.Delete(id).ok());
  ExpectError(Get("/v1/export-jobs/" + id), 404, "NOT_FOUND",
              absl::StrCat("job ", id, " not found"));
}

TEST_F(JobViewTest, AMalformedIdIsABadRequestNamingIt) {
  ExpectError(Get("/v1/export-jobs/not-an-id"), 400, "INVALID_ARGUMENT",
              "id: \"not-an-id\" is not a job id");
}

TEST_F(JobViewTest, AJobTakesNoParameters) {
  const std::string id = Create().id();
  ExpectError(Get(absl::StrCat("/v1/export-jobs/", id, "?view=full")), 400, "INVALID_ARGUMENT",
              StartsWith("\"view\": unknown parameter"));
}

TEST_F(JobViewTest, TheListIsNewestFirstWithoutATokenOnTheLastPage) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.insert(ids.begin(), Create().id());
  Reply reply = Get("/v1/export-jobs");
  ASSERT_EQ(reply.status, 200) << reply.error << reply.body;
  EXPECT_EQ(reply.Header("Content-Type"), "application/json");
  EXPECT_THAT(Ids(reply), ElementsAreArray(ids));
  nlohmann::ordered_json body = nlohmann::ordered_json::parse(reply.body);
  EXPECT_FALSE(body.contains("next_page_token")) << reply.body;
  EXPECT_EQ(body.size(), 1u) << reply.body;
  // Each job is exactly the JSON form of the gRPC job, in the schema's order.
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(body["export_jobs"][i].dump(), JobJson(GrpcGet(ids[i])).dump());
  }
}

TEST_F(JobViewTest, AnEmptyListHasAnEmptyArray) {
  Reply reply = Get("/v1/export-jobs");
  ASSERT_EQ(reply.status, 200) << reply.error << reply.body;
  EXPECT_EQ(reply.body, "{\"export_jobs\":[]}\n");
}

TEST_F(JobViewTest, TheListFiltersByStatusAndEntityType) {
  const std::string people = Create(exportjobs::v1::ENTITY_TYPE_PEOPLE).id();
  const std::string accounts = Create().id();
  const std::string cancelled_people = Create(exportjobs::v1::ENTITY_TYPE_PEOPLE).id();
  ExportJob ignored;
  ASSERT_TRUE(server_.Cancel(cancelled_people, &ignored).ok());

  EXPECT_THAT(Ids(Get("/v1/export-jobs?entity_type=people")),
              ElementsAreArray({cancelled_people, people}));
  EXPECT_THAT(Ids(Get("/v1/export-jobs?status=cancelled")), ElementsAreArray({cancelled_people}));
  EXPECT_THAT(Ids(Get("/v1/export-jobs?status=pending&entity_type=people")),
              ElementsAreArray({people}));
  EXPECT_THAT(Ids(Get("/v1/export-jobs?status=pending&entity_type=accounts")),
              ElementsAreArray({accounts}));
  EXPECT_THAT(Ids(Get("/v1/export-jobs?status=completed")), ::testing::IsEmpty());
  // An empty value is no filter.
  EXPECT_EQ(Ids(Get("/v1/export-jobs?status=&entity_type=")).size(), 3u);
}

TEST_F(JobViewTest, PagingVisitsEveryJobOnceInTheGrpcOrder) {
  constexpr int kJobs = 7;
  std::vector<std::string> ids;
  for (int i = 0; i < kJobs; ++i) ids.insert(ids.begin(), Create().id());

  std::vector<std::string> seen;
  std::vector<size_t> page_sizes;
  std::string token;
  do {
    std::string path = "/v1/export-jobs?page_size=3";
    if (!token.empty()) absl::StrAppend(&path, "&page_token=", token);
    Reply reply = Get(path);
    ASSERT_EQ(reply.status, 200) << reply.error << reply.body;
    std::vector<std::string> page = Ids(reply);
    page_sizes.push_back(page.size());
    seen.insert(seen.end(), page.begin(), page.end());
    token = TokenOf(reply);
    ASSERT_LE(page_sizes.size(), 3u) << "the pages do not end";
  } while (!token.empty());
  EXPECT_THAT(page_sizes, ElementsAreArray({3u, 3u, 1u}));
  EXPECT_THAT(seen, ElementsAreArray(ids));

  // The tokens are those of the gRPC API: a gRPC token continues an HTTP list.
  exportjobs::v1::ListExportJobsRequest request;
  request.set_page_size(3);
  exportjobs::v1::ListExportJobsResponse first;
  ASSERT_TRUE(server_.List(request, &first).ok());
  Reply second = Get("/v1/export-jobs?page_size=3&page_token=" + first.next_page_token());
  EXPECT_THAT(Ids(second),
              ElementsAreArray(std::vector<std::string>(ids.begin() + 3, ids.begin() + 6)));
}

TEST_F(JobViewTest, PageSizeDefaultsAndLimitsAreTheGrpcOnes) {
  // 1001 jobs, created 64 at a time.
  constexpr int kJobs = 1001;
  std::atomic<int> failed{0};
  for (int created = 0; created < kJobs;) {
    const int batch = std::min(64, kJobs - created);
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<ExportJob> jobs(batch);
    CreateExportJobRequest request = AccountsRequest();
    absl::BlockingCounter done(batch);
    for (int i = 0; i < batch; ++i) {
      contexts.push_back(Deadlined());
      server_.stub().async()->CreateExportJob(contexts.back().get(), &request, &jobs[i],
                                              [&](grpc::Status status) {
                                                if (!status.ok()) ++failed;
                                                done.DecrementCount();
                                              });
    }
    done.Wait();
    created += batch;
  }
  ASSERT_EQ(failed.load(), 0);

  Reply by_default = Get("/v1/export-jobs");
  EXPECT_EQ(Ids(by_default).size(), 50u);
  EXPECT_NE(TokenOf(by_default), "");
  Reply largest = Get("/v1/export-jobs?page_size=5000");
  EXPECT_EQ(Ids(largest).size(), 1000u);
  Reply rest = Get("/v1/export-jobs?page_size=5000&page_token=" + TokenOf(largest));
  EXPECT_EQ(Ids(rest).size(), 1u);
  EXPECT_EQ(TokenOf(rest), "");
}

TEST_F(JobViewTest, BadListParametersAreBadRequestsNamingTheParameter) {
  const struct {
    std::string query;
    std::string message;
  } cases[] = {
      {"status=done",
       "status: unknown value \"done\"; one of pending, processing, completed, failed, "
       "cancelled"},
      {"status=PENDING", "status: unknown value \"PENDING\""},
      {"entity_type=leads", "entity_type: unknown value \"leads\""},
      {"page_size=ten", "page_size: must be an integer (at most 2147483647), got \"ten\""},
      {"page_size=99999999999", "page_size: must be an integer"},
      {"page_size=-1", "page_size: must not be negative, got -1"},
      {"page_token=garbage", "page_token: not a token from a previous ListExportJobs response"},
      {"pageSize=3", "\"pageSize\": unknown parameter"},
      {"status=pending&status=failed", "status: given more than once"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.query);
    ExpectError(Get("/v1/export-jobs?" + c.query), 400, "INVALID_ARGUMENT", StartsWith(c.message));
  }
}

TEST_F(JobViewTest, ATokenOfOtherFiltersIsABadRequest) {
  for (int i = 0; i < 3; ++i) Create();
  const std::string token = TokenOf(Get("/v1/export-jobs?page_size=1"));
  ASSERT_NE(token, "");
  ExpectError(Get("/v1/export-jobs?status=pending&page_token=" + token), 400, "INVALID_ARGUMENT",
              HasSubstr("page_token: was issued for a different status or entity_type filter"));
}

TEST_F(JobViewTest, OtherMethodsAreNotAllowed) {
  const std::string id = Create().id();
  for (const char* method : {"POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
    for (const std::string& path : {std::string("/v1/export-jobs"), "/v1/export-jobs/" + id}) {
      SCOPED_TRACE(absl::StrCat(method, " ", path));
      Reply reply = Send(method, path);
      ExpectError(reply, 405, "METHOD_NOT_ALLOWED",
                  absl::StrCat(method, " is not allowed here; use GET or HEAD"));
      EXPECT_EQ(reply.Header("Allow"), "GET, HEAD");
    }
  }
  // The job is still there.
  EXPECT_EQ(Get("/v1/export-jobs/" + id).status, 200);
}

TEST_F(JobViewTest, OtherMethodsOnOtherPathsAreNotAllowedEither) {
  const std::string id = Create().id();
  for (const std::string& path : {std::string("/healthz"), "/v1/export-jobs/" + id + "/file",
                                  "/v1/export-jobs/" + id + "/parts/1"}) {
    SCOPED_TRACE(path);
    Reply reply = Send("POST", path);
    EXPECT_EQ(reply.status, 405) << reply.body;
    EXPECT_EQ(reply.Header("Allow"), "GET, HEAD");
    EXPECT_THAT(reply.body, StartsWith("method not allowed: POST is not allowed here"));
  }
  Reply unknown = Send("POST", "/nowhere");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.HeaderCount("Allow"), 0u);
}

TEST_F(JobViewTest, DownloadRoutesStillAnswer) {
  const std::string id = Create().id();
  // An unsigned download is refused by its signature check, not taken for a job view.
  Reply file = Get(absl::StrCat("/v1/export-jobs/", id, "/file"));
  EXPECT_EQ(file.status, 403) << file.body;
  EXPECT_THAT(file.body, StartsWith("forbidden"));
  Reply part = Get(absl::StrCat("/v1/export-jobs/", id, "/parts/1"));
  EXPECT_EQ(part.status, 403) << part.body;
  EXPECT_EQ(Get("/healthz").status, 200);
}

// --- The output against the schema ---

// Runs `argv` (argv[0] looked up in PATH) with stdin from `input_file`; returns the exit code
// (or -1) and its stdout and stderr in *output.
int Run(const std::vector<std::string>& argv, const std::string& input_file, std::string* output,
        const std::string& output_file) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, input_file.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    *output = absl::StrCat("cannot run ", argv[0], ": ", std::strerror(spawned));
    return -1;
  }
  int wait_status = 0;
  while (waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
  }
  std::ifstream in(output_file);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
}

// Validates `json` with tests/node/validate_export_job.js (with `list_key`, a list body);
// returns the validator's exit code and output.
std::pair<int, std::string> Validate(const std::string& json, const std::string& list_key) {
  test_support::TempDir dir;
  const std::string input = dir.path() + "/input.json";
  std::ofstream(input) << json;
  std::vector<std::string> argv = {"node", EXPORTD_SOURCE_DIR "/tests/node/validate_export_job.js"};
  if (!list_key.empty()) {
    argv.push_back("--list");
    argv.push_back(list_key);
  }
  std::string output;
  const int code = Run(argv, input, &output, dir.path() + "/output.txt");
  return {code, output};
}

TEST_F(JobViewTest, EveryKindOfJobValidatesAgainstTheSchema) {
  JobManager* jobs = server_.server().job_manager();
  // Pending with filters; cancelled; completed with parts and download URLs; failed with an
  // error message that needs escaping.
  CreateExportJobRequest filtered = AccountsRequest();
  (*filtered.mutable_filters()->mutable_fields())["country"].set_string_value("DE");
  auto& range = *(*filtered.mutable_filters()->mutable_fields())["employee_count"]
                     .mutable_struct_value()
                     ->mutable_fields();
  range["gte"].set_number_value(100);
  range["lt"].set_number_value(5000);
  ExportJob pending;
  ASSERT_TRUE(server_.Create(filtered, &pending).ok());
  ExportJob cancelled = Create(exportjobs::v1::ENTITY_TYPE_BUYING_GROUPS);
  ASSERT_TRUE(server_.Cancel(cancelled.id(), &cancelled).ok());
  ASSERT_EQ(cancelled.status(), kCancelled);

  const std::string to_complete = Create(exportjobs::v1::ENTITY_TYPE_CAMPAIGNS).id();
  ASSERT_OK_AND_ASSIGN(JobManager::Claimed claimed, AwaitCall<JobManager::Claimed>([&](auto done) {
                         jobs->Claim("worker-1", {exportjobs::v1::ENTITY_TYPE_CAMPAIGNS},
                                     absl::ZeroDuration(), std::move(done));
                       }));
  ASSERT_TRUE(claimed.job.has_value());
  exportjobs::v1::ExportPart part;
  part.set_part_number(1);
  part.set_size_bytes(1234);
  part.set_record_count(10);
  part.set_sha256(std::string(64, 'a'));
  ASSERT_OK(AwaitCall<ExportJob>([&](auto done) {
    jobs->RecordPart(to_complete, claimed.lease.token(), part, std::move(done));
  }));
  exportjobs::v1::CompleteExportJobRequest complete;
  complete.set_job_id(to_complete);
  complete.set_lease_token(claimed.lease.token());
  complete.set_record_count(10);
  *complete.add_parts() = part;
  ASSERT_OK_AND_ASSIGN(ExportJob completed, AwaitCall<ExportJob>([&](auto done) {
                         jobs->Complete(complete, std::move(done));
                       }));
  ASSERT_NE(completed.download_url(), "");

  const std::string to_fail = Create(exportjobs::v1::ENTITY_TYPE_PEOPLE).id();
  ASSERT_OK_AND_ASSIGN(claimed, AwaitCall<JobManager::Claimed>([&](auto done) {
                         jobs->Claim("worker-1", {exportjobs::v1::ENTITY_TYPE_PEOPLE},
                                     absl::ZeroDuration(), std::move(done));
                       }));
  exportjobs::v1::FailExportJobRequest fail;
  fail.set_job_id(to_fail);
  fail.set_lease_token(claimed.lease.token());
  fail.set_error_message("source said \"no\"\n\tat line 3 — \\ done");
  ASSERT_OK(AwaitCall<ExportJob>([&](auto done) { jobs->Fail(fail, std::move(done)); }));
  // And one in progress.
  Create(exportjobs::v1::ENTITY_TYPE_ACTIVITIES);
  ASSERT_OK(AwaitCall<JobManager::Claimed>([&](auto done) {
    jobs->Claim("worker-2", {exportjobs::v1::ENTITY_TYPE_ACTIVITIES}, absl::ZeroDuration(),
                std::move(done));
  }));

  Reply list = Get("/v1/export-jobs");
  ASSERT_EQ(list.status, 200) << list.body;
  ASSERT_EQ(Ids(list).size(), 5u);
  auto [code, output] = Validate(list.body, "export_jobs");
  EXPECT_EQ(code, 0) << output << "\n" << list.body;
  EXPECT_THAT(output, HasSubstr("ok 5 jobs"));

  // Each job's own view, as JSON Lines (the validator reads one job per line).
  std::string each;
  for (const std::string& id : Ids(list)) {
    Reply one = Get("/v1/export-jobs/" + id);
    ASSERT_EQ(one.status, 200) << one.body;
    each += one.body;
  }
  auto [each_code, each_output] = Validate(each, "");
  EXPECT_EQ(each_code, 0) << each_output << "\n" << each;
  EXPECT_THAT(each_output, HasSubstr("ok 5 jobs"));
  Json body = Json::parse(list.body);
  EXPECT_EQ(body["export_jobs"][1]["error_message"], fail.error_message());
}

TEST_F(JobViewTest, TheValidatorFailsOnAViolation) {
  // The check above is only worth something if the validator rejects what is wrong.
  Create();
  Json body = Json::parse(Get("/v1/export-jobs").body);
  body["export_jobs"][0]["status"] = "PENDING";
  auto [code, output] = Validate(body.dump(), "export_jobs");
  EXPECT_EQ(code, 1) << output;
}

// --- Failures of the reads, with an HttpServer whose reads are stand-ins ---

class JobViewFailureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(store_, RocksDbJobStore::Open({.path = dir_.path() + "/jobs"}));
    ASSERT_OK_AND_ASSIGN(blobs_, OpenFileBlobStore(dir_.path() + "/parts"));
    ASSERT_OK_AND_ASSIGN(signer_, DownloadSigner::Create(std::string(32, 'k'), "http://x"));
    HttpServer::Options options;
    options.address = "127.0.0.1:0";
    options.jobs = store_.get();
    options.blobs = blobs_.get();
    options.signer = signer_.get();
    options.threads = 2;
    options.get_job = [this](const std::string&, const std::string&) -> absl::StatusOr<ExportJob> {
      return error_;
    };
    options.list_jobs = [this](const exportjobs::v1::ListExportJobsRequest&, const std::string&)
        -> absl::StatusOr<exportjobs::v1::ListExportJobsResponse> { return error_; };
    ASSERT_OK_AND_ASSIGN(http_, HttpServer::Start(options));
  }

  test_support::TempDir dir_;
  std::unique_ptr<RocksDbJobStore> store_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<DownloadSigner> signer_;
  absl::Status error_;
  std::unique_ptr<HttpServer> http_;
};

TEST_F(JobViewFailureTest, ServerFailuresKeepTheirDetailsOutOfTheBody) {
  const struct {
    absl::Status error;
    int code;
    std::string status;
    std::string message;
  } cases[] = {
      {absl::UnavailableError("/var/lib/x: IO error"), 503, "UNAVAILABLE",
       "the jobs cannot be read now; retry later"},
      {absl::DeadlineExceededError("the job store did not answer within 10s"), 504,
       "DEADLINE_EXCEEDED", "the jobs cannot be read now; retry later"},
      {absl::InternalError("corrupt record"), 500, "INTERNAL", "the jobs cannot be read"},
      {absl::NotFoundError("job x not found"), 404, "NOT_FOUND", "job x not found"},
  };
  for (const auto& c : cases) {
    error_ = c.error;
    for (const char* path : {"/v1/export-jobs", "/v1/export-jobs/0123456789abcdef01234567"}) {
      SCOPED_TRACE(absl::StrCat(c.error.ToString(), " ", path));
      Reply reply = HttpGet(http_->address(), path);
      EXPECT_EQ(reply.status, c.code);
      Json error = ErrorOf(reply);
      ASSERT_TRUE(error.is_object()) << reply.body;
      EXPECT_EQ(error["code"], c.code);
      EXPECT_EQ(error["status"], c.status);
      EXPECT_EQ(error["message"], c.message);
    }
  }
}

TEST(JobViewParamsTest, ParsesEveryParameter) {
  ASSERT_OK_AND_ASSIGN(exportjobs::v1::ListExportJobsRequest request,
                       ParseListParams({{"status", "failed"},
                                        {"entity_type", "buying_groups"},
                                        {"page_size", "7"},
                                        {"page_token", "abc"}}));
  EXPECT_EQ(request.status(), exportjobs::v1::EXPORT_JOB_STATUS_FAILED);
  EXPECT_EQ(request.entity_type(), exportjobs::v1::ENTITY_TYPE_BUYING_GROUPS);
  EXPECT_EQ(request.page_size(), 7);
  EXPECT_EQ(request.page_token(), "abc");
}

TEST(JobViewParamsTest, HttpStatusOfEachCode) {
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kFailedPrecondition), 400);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kOutOfRange), 400);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kAlreadyExists), 409);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kAborted), 409);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnimplemented), 501);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kInternal), 500);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kDataLoss), 500);
}

}  // namespace
}  // namespace exportd::testing
