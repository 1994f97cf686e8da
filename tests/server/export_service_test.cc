// ExportService over a real gRPC channel to a real server (RocksDB in a temporary directory).
#include <algorithm>
#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "tests/server/test_server.h"

namespace exportd::testing {
namespace {

using exportjobs::v1::ListExportJobsRequest;
using exportjobs::v1::ListExportJobsResponse;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kUnknownId[] = "00000000000000000000abcd";

// Creates `n` jobs with up to 32 calls in flight; returns them in creation order.
std::vector<ExportJob> CreateMany(TestServer& server, int n,
                                  const CreateExportJobRequest& request = AccountsRequest()) {
  std::vector<ExportJob> jobs(n);
  std::vector<grpc::Status> statuses(n);
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts(n);
  absl::Mutex mu;
  int next = 0;
  int done = 0;
  bool all_done = n == 0;
  std::function<void()> start_one = [&] {
    int i;
    {
      absl::MutexLock lock(&mu);
      if (next >= n) return;
      i = next++;
    }
    contexts[i] = Deadlined();
    server.stub().async()->CreateExportJob(contexts[i].get(), &request, &jobs[i],
                                           [&, i](grpc::Status status) {
                                             statuses[i] = status;
                                             start_one();
                                             absl::MutexLock lock(&mu);
                                             all_done = ++done == n;
                                           });
  };
  for (int k = 0; k < std::min(n, 32); ++k) start_one();
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&all_done));
  }
  for (int i = 0; i < n; ++i) EXPECT_TRUE(statuses[i].ok()) << statuses[i].error_message();
  std::sort(jobs.begin(), jobs.end(),
            [](const ExportJob& a, const ExportJob& b) { return a.id() < b.id(); });
  return jobs;
}

std::vector<std::string> Ids(const google::protobuf::RepeatedPtrField<ExportJob>& jobs) {
  std::vector<std::string> ids;
  for (const ExportJob& job : jobs) ids.push_back(job.id());
  return ids;
}

TEST(ExportServiceTest, CreateReturnsPendingJobWithRevisionOneAndDefaults) {
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  ServerOptions options;
  options.clock = &clock;
  TestServer server(options);
  CreateExportJobRequest request = AccountsRequest();
  (*request.mutable_filters()->mutable_fields())["country"].set_string_value("DE");

  ExportJob job;
  ASSERT_TRUE(server.Create(request, &job).ok());

  EXPECT_EQ(job.id().size(), 24u);
  EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  EXPECT_EQ(job.revision(), 1);
  EXPECT_EQ(job.entity_type(), exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  EXPECT_THAT(job.fields(), ElementsAreArray({"name", "domain"}));
  EXPECT_EQ(job.filters().fields().at("country").string_value(), "DE");
  EXPECT_EQ(FromProtoTime(job.created_at()), clock.Now());
  EXPECT_EQ(job.format(), exportjobs::v1::EXPORT_FORMAT_CSV);
  EXPECT_EQ(job.compression(), exportjobs::v1::COMPRESSION_NONE);
  EXPECT_EQ(job.part_size_bytes(), int64_t{64} << 20);
  EXPECT_FALSE(job.has_completed_at());
}

TEST(ExportServiceTest, GetReturnsTheCreatedJob) {
  TestServer server;
  ExportJob created;
  ASSERT_TRUE(server.Create(AccountsRequest(), &created).ok());

  ExportJob got;
  ASSERT_TRUE(server.Get(created.id(), &got).ok());

  EXPECT_EQ(got.DebugString(), created.DebugString());
}

TEST(ExportServiceTest, GetUnknownIdIsNotFound) {
  TestServer server;
  ExportJob job;
  grpc::Status status = server.Get(kUnknownId, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr(kUnknownId));
}

TEST(ExportServiceTest, MalformedOrMissingIdIsInvalidArgumentEverywhere) {
  TestServer server;
  ExportJob job;
  for (const std::string id : {"", "not-an-id", "ABCDEF0000000000000000ab"}) {
    SCOPED_TRACE(id);
    grpc::Status get = server.Get(id, &job);
    EXPECT_EQ(get.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(get.error_message(), StartsWith("id: "));
    EXPECT_EQ(server.Cancel(id, &job).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(server.Delete(id).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
}

struct InvalidCreateCase {
  std::string name;
  std::function<void(CreateExportJobRequest&)> mutate;
  std::string message_prefix;
};

class CreateValidationTest : public ::testing::TestWithParam<InvalidCreateCase> {};

// Builds filters nested `depth` structs deep: {"a": {"a": ... {"a": 1}}}.
google::protobuf::Struct NestedFilters(int depth) {
  google::protobuf::Struct root;
  google::protobuf::Struct* current = &root;
  for (int i = 1; i < depth; ++i) {
    current = (*current->mutable_fields())["a"].mutable_struct_value();
  }
  (*current->mutable_fields())["a"].set_number_value(1);
  return root;
}

TEST_P(CreateValidationTest, IsInvalidArgumentNamingTheField) {
  TestServer server;
  CreateExportJobRequest request = AccountsRequest();
  GetParam().mutate(request);

  ExportJob job;
  grpc::Status status = server.Create(request, &job);

  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith(GetParam().message_prefix));
  ListExportJobsResponse list;
  ASSERT_TRUE(server.List({}, &list).ok());
  EXPECT_EQ(list.jobs_size(), 0) << "a refused create must not store a job";
}

INSTANTIATE_TEST_SUITE_P(
    AllRules, CreateValidationTest,
    ::testing::Values(
        InvalidCreateCase{
            "EntityTypeUnset",
            [](auto& r) { r.set_entity_type(exportjobs::v1::ENTITY_TYPE_UNSPECIFIED); },
            "entity_type: must be set"},
        InvalidCreateCase{
            "EntityTypeUnknown",
            [](auto& r) { r.set_entity_type(static_cast<exportjobs::v1::EntityType>(42)); },
            "entity_type: unknown value 42"},
        InvalidCreateCase{"FieldEmpty", [](auto& r) { r.add_fields(""); },
                          "fields[2]: must not be empty"},
        InvalidCreateCase{"FieldNotAName", [](auto& r) { r.add_fields("drop table"); },
                          "fields[2]: \"drop table\" is not a field name"},
        InvalidCreateCase{"FieldTooLong", [](auto& r) { r.add_fields(std::string(129, 'a')); },
                          "fields[2]: longer than 128 characters"},
        InvalidCreateCase{"FieldUnknown", [](auto& r) { r.add_fields("colour"); },
                          "fields[2]: unknown field \"colour\" for accounts"},
        InvalidCreateCase{"FilterOnUnknownField",
                          [](auto& r) {
                            (*r.mutable_filters()->mutable_fields())["colour"].set_string_value(
                                "red");
                          },
                          "filters.colour: unknown field for accounts"},
        InvalidCreateCase{
            "FilterOfTheWrongType",
            [](auto& r) {
              (*r.mutable_filters()->mutable_fields())["employee_count"].set_string_value("ten");
            },
            "filters.employee_count: "},
        InvalidCreateCase{"FilterWithUnknownOperator",
                          [](auto& r) {
                            (*(*r.mutable_filters()->mutable_fields())["country"]
                                  .mutable_struct_value()
                                  ->mutable_fields())["like"]
                                .set_string_value("D%");
                          },
                          "filters.country.like: "},
        InvalidCreateCase{"FieldDuplicate", [](auto& r) { r.add_fields("name"); },
                          "fields[2]: duplicate of fields[0] (\"name\")"},
        InvalidCreateCase{"TooManyFields",
                          [](auto& r) {
                            r.clear_fields();
                            for (int i = 0; i < 501; ++i) r.add_fields(absl::StrCat("f", i));
                          },
                          "fields: at most 500 fields, got 501"},
        InvalidCreateCase{"FiltersTooDeep",
                          [](auto& r) { *r.mutable_filters() = NestedFilters(9); },
                          "filters.a.a.a.a.a.a.a.a: nested more than 8 levels deep"},
        InvalidCreateCase{"FiltersTooLarge",
                          [](auto& r) {
                            (*r.mutable_filters()->mutable_fields())["name"].set_string_value(
                                std::string(70'000, 'x'));
                          },
                          "filters: "},
        InvalidCreateCase{"RequestIdWithSpace", [](auto& r) { r.set_request_id("a b"); },
                          "request_id: must be printable ASCII"},
        InvalidCreateCase{"RequestIdTooLong",
                          [](auto& r) { r.set_request_id(std::string(129, 'r')); },
                          "request_id: longer than 128 characters"},
        InvalidCreateCase{
            "FormatUnknown",
            [](auto& r) { r.set_format(static_cast<exportjobs::v1::ExportFormat>(9)); },
            "format: unknown value 9"},
        InvalidCreateCase{
            "CompressionUnknown",
            [](auto& r) { r.set_compression(static_cast<exportjobs::v1::Compression>(7)); },
            "compression: unknown value 7"},
        InvalidCreateCase{"PartSizeTooSmall", [](auto& r) { r.set_part_size_bytes(100); },
                          "part_size_bytes: must be 0 (the default) or between 1024 and"},
        InvalidCreateCase{"PartSizeNegative", [](auto& r) { r.set_part_size_bytes(-1); },
                          "part_size_bytes: "},
        InvalidCreateCase{"PartSizeTooLarge",
                          [](auto& r) { r.set_part_size_bytes((int64_t{4} << 30) + 1); },
                          "part_size_bytes: "}),
    [](const auto& info) { return info.param.name; });

TEST(ExportServiceTest, FiltersEightLevelsDeepAreAccepted) {
  TestServer server;
  CreateExportJobRequest request = AccountsRequest();
  // filters > any_of > {} > any_of > {} > any_of > {} > {"eq": "DE"}: eight levels.
  google::protobuf::Struct* level = request.mutable_filters();
  for (int i = 0; i < 3; ++i) {
    level = (*level->mutable_fields())["any_of"]
                .mutable_list_value()
                ->add_values()
                ->mutable_struct_value();
  }
  (*(*level->mutable_fields())["country"].mutable_struct_value()->mutable_fields())["eq"]
      .set_string_value("DE");
  ExportJob job;
  grpc::Status status = server.Create(request, &job);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST(ExportServiceTest, NoFieldsMeansTheEntitysDefaultFields) {
  TestServer server;
  CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_OPPORTUNITIES);
  ExportJob job;
  ASSERT_TRUE(server.Create(request, &job).ok());
  EXPECT_THAT(job.fields(),
              ElementsAreArray({"id", "account_id", "name", "stage", "amount", "close_date"}));
}

TEST(ExportServiceTest, ListExportableFieldsDescribesTheCatalog) {
  TestServer server;
  exportjobs::v1::ListExportableFieldsRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  exportjobs::v1::ListExportableFieldsResponse response;
  ASSERT_TRUE(server.stub().ListExportableFields(Deadlined().get(), request, &response).ok());
  exportjobs::v1::ListExportableFieldsRequest unset;
  exportjobs::v1::ListExportableFieldsResponse ignored;
  grpc::Status refused = server.stub().ListExportableFields(Deadlined().get(), unset, &ignored);

  ASSERT_GE(response.fields_size(), 10);
  EXPECT_EQ(response.fields(0).name(), "id");
  EXPECT_EQ(response.fields(0).type(), exportjobs::v1::FIELD_TYPE_INTEGER);
  EXPECT_TRUE(response.fields(0).default_());
  EXPECT_FALSE(response.fields(0).description().empty());
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), StartsWith("entity_type: must be set"));
}

TEST(ExportServiceTest, RetryWithSameRequestIdReturnsTheSameJob) {
  TestServer server;
  CreateExportJobRequest request = AccountsRequest();
  request.set_request_id("order-7");
  ExportJob first;
  ExportJob retry;
  ASSERT_TRUE(server.Create(request, &first).ok());
  ASSERT_TRUE(server.Create(request, &retry).ok());

  EXPECT_EQ(retry.DebugString(), first.DebugString());
  EXPECT_EQ(first.request_id(), "order-7");
  ListExportJobsResponse list;
  ASSERT_TRUE(server.List({}, &list).ok());
  EXPECT_EQ(list.jobs_size(), 1);
}

TEST(ExportServiceTest, RetryWithDefaultsSpelledOutIsTheSameRequest) {
  TestServer server;
  CreateExportJobRequest implicit = AccountsRequest();
  implicit.set_request_id("r");
  CreateExportJobRequest explicit_defaults = implicit;
  explicit_defaults.set_format(exportjobs::v1::EXPORT_FORMAT_CSV);
  explicit_defaults.set_compression(exportjobs::v1::COMPRESSION_NONE);
  ExportJob a;
  ExportJob b;
  ASSERT_TRUE(server.Create(implicit, &a).ok());
  ASSERT_TRUE(server.Create(explicit_defaults, &b).ok());
  EXPECT_EQ(a.id(), b.id());
}

TEST(ExportServiceTest, SameRequestIdWithDifferentRequestIsAlreadyExists) {
  TestServer server;
  CreateExportJobRequest request = AccountsRequest();
  request.set_request_id("order-7");
  ExportJob first;
  ASSERT_TRUE(server.Create(request, &first).ok());
  request.add_fields("industry");

  ExportJob second;
  grpc::Status status = server.Create(request, &second);

  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), StartsWith("request_id: \"order-7\""));
  EXPECT_THAT(status.error_message(), HasSubstr(first.id()));
}

TEST(ExportServiceTest, ConcurrentRetriesCreateExactlyOneJob) {
  TestServer server;
  CreateExportJobRequest request = AccountsRequest();
  request.set_request_id("burst");

  std::vector<ExportJob> jobs = CreateMany(server, 64, request);

  std::set<std::string> ids;
  for (const ExportJob& job : jobs) ids.insert(job.id());
  EXPECT_EQ(ids.size(), 1u);
  ListExportJobsResponse list;
  ASSERT_TRUE(server.List({}, &list).ok());
  EXPECT_EQ(list.jobs_size(), 1);
}

TEST(ExportServiceTest, ARequestIdIsFreeAgainAfterItsJobIsDeleted) {
  TestServer server;
  CreateExportJobRequest request = AccountsRequest();
  request.set_request_id("again");
  ExportJob first;
  ASSERT_TRUE(server.Create(request, &first).ok());
  ExportJob cancelled;
  ASSERT_TRUE(server.Cancel(first.id(), &cancelled).ok());
  ASSERT_TRUE(server.Delete(first.id()).ok());

  ExportJob second;
  ASSERT_TRUE(server.Create(request, &second).ok());
  EXPECT_NE(second.id(), first.id());
}

TEST(ExportServiceTest, ListPagesNewestFirstWithOpaqueTokens) {
  TestServer server;
  std::vector<ExportJob> jobs = CreateMany(server, 7);
  std::vector<std::string> newest_first;
  for (auto it = jobs.rbegin(); it != jobs.rend(); ++it) newest_first.push_back(it->id());

  std::vector<std::string> seen;
  ListExportJobsRequest request;
  request.set_page_size(3);
  std::vector<int> page_sizes;
  do {
    ListExportJobsResponse page;
    ASSERT_TRUE(server.List(request, &page).ok());
    page_sizes.push_back(page.jobs_size());
    for (const std::string& id : Ids(page.jobs())) seen.push_back(id);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());

  EXPECT_THAT(page_sizes, ElementsAreArray({3, 3, 1}));
  EXPECT_EQ(seen, newest_first);
}

TEST(ExportServiceTest, ListPageTokenIsStableWhileJobsAreCreated) {
  TestServer server;
  std::vector<ExportJob> jobs = CreateMany(server, 4);
  ListExportJobsRequest request;
  request.set_page_size(2);
  ListExportJobsResponse first;
  ASSERT_TRUE(server.List(request, &first).ok());
  CreateMany(server, 3);  // Newer than everything listed so far.

  request.set_page_token(first.next_page_token());
  ListExportJobsResponse second;
  ASSERT_TRUE(server.List(request, &second).ok());

  EXPECT_THAT(Ids(second.jobs()), ElementsAreArray({jobs[1].id(), jobs[0].id()}));
  EXPECT_TRUE(second.next_page_token().empty());
}

TEST(ExportServiceTest, ListDefaultsTo50AndCapsAt1000) {
  TestServer server;
  CreateMany(server, 1001);
  ListExportJobsResponse by_default;
  ASSERT_TRUE(server.List({}, &by_default).ok());
  ListExportJobsRequest huge;
  huge.set_page_size(5000);
  ListExportJobsResponse capped;
  ASSERT_TRUE(server.List(huge, &capped).ok());

  EXPECT_EQ(by_default.jobs_size(), 50);
  EXPECT_EQ(capped.jobs_size(), 1000);
  EXPECT_FALSE(capped.next_page_token().empty());
}

TEST(ExportServiceTest, ListFiltersByStatusAndEntityType) {
  TestServer server;
  std::vector<ExportJob> accounts = CreateMany(server, 3);
  std::vector<ExportJob> people =
      CreateMany(server, 2, AccountsRequest(exportjobs::v1::ENTITY_TYPE_PEOPLE));
  ExportJob cancelled;
  ASSERT_TRUE(server.Cancel(accounts[1].id(), &cancelled).ok());
  ASSERT_TRUE(server.Cancel(people[0].id(), &cancelled).ok());

  ListExportJobsRequest request;
  request.set_status(exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  ListExportJobsResponse by_status;
  ASSERT_TRUE(server.List(request, &by_status).ok());
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  ListExportJobsResponse by_both;
  ASSERT_TRUE(server.List(request, &by_both).ok());
  request.set_status(exportjobs::v1::EXPORT_JOB_STATUS_UNSPECIFIED);
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_PEOPLE);
  ListExportJobsResponse by_entity;
  ASSERT_TRUE(server.List(request, &by_entity).ok());

  EXPECT_THAT(Ids(by_status.jobs()), ElementsAreArray({people[0].id(), accounts[1].id()}));
  EXPECT_THAT(Ids(by_both.jobs()), ElementsAreArray({accounts[1].id()}));
  EXPECT_THAT(Ids(by_entity.jobs()), ElementsAreArray({people[1].id(), people[0].id()}));
}

TEST(ExportServiceTest, ListRejectsBadArguments) {
  TestServer server;
  CreateMany(server, 3);
  ListExportJobsRequest request;
  request.set_page_size(1);
  ListExportJobsResponse page;
  ASSERT_TRUE(server.List(request, &page).ok());
  ASSERT_FALSE(page.next_page_token().empty());

  struct Case {
    std::string name;
    ListExportJobsRequest request;
    std::string prefix;
  };
  std::vector<Case> cases(5);
  cases[0] = {"negative page_size", {}, "page_size: must not be negative"};
  cases[0].request.set_page_size(-1);
  cases[1] = {"garbage token", {}, "page_token: not a token"};
  cases[1].request.set_page_token("garbage!");
  cases[2] = {"token with other filters", {}, "page_token: was issued for a different"};
  cases[2].request.set_page_token(page.next_page_token());
  cases[2].request.set_status(exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  cases[3] = {"unknown status", {}, "status: unknown value 77"};
  cases[3].request.set_status(static_cast<exportjobs::v1::ExportJobStatus>(77));
  cases[4] = {"unknown entity type", {}, "entity_type: unknown value 77"};
  cases[4].request.set_entity_type(static_cast<exportjobs::v1::EntityType>(77));
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ListExportJobsResponse response;
    grpc::Status status = server.List(c.request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), StartsWith(c.prefix));
  }
}

TEST(ExportServiceTest, CancelPendingJobCancelsItAtOnce) {
  TestServer server;
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());

  ExportJob cancelled;
  ASSERT_TRUE(server.Cancel(job.id(), &cancelled).ok());
  ExportJob stored;
  ASSERT_TRUE(server.Get(job.id(), &stored).ok());

  EXPECT_EQ(cancelled.status(), exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  EXPECT_EQ(cancelled.revision(), 2);
  EXPECT_TRUE(cancelled.has_completed_at());
  EXPECT_EQ(stored.DebugString(), cancelled.DebugString());
}

TEST(ExportServiceTest, CancelTerminalJobIsFailedPrecondition) {
  TestServer server;
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
  ASSERT_TRUE(server.Cancel(job.id(), &job).ok());

  ExportJob again;
  grpc::Status status = server.Cancel(job.id(), &again);

  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("is already cancelled"));
}

TEST(ExportServiceTest, CancelUnknownJobIsNotFound) {
  TestServer server;
  ExportJob job;
  EXPECT_EQ(server.Cancel(kUnknownId, &job).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(ExportServiceTest, DeletePendingJobIsFailedPrecondition) {
  TestServer server;
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());

  grpc::Status status = server.Delete(job.id());

  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("is pending"));
  ExportJob still_there;
  EXPECT_TRUE(server.Get(job.id(), &still_there).ok());
}

TEST(ExportServiceTest, DeleteTerminalJobRemovesIt) {
  TestServer server;
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
  ASSERT_TRUE(server.Cancel(job.id(), &job).ok());

  ASSERT_TRUE(server.Delete(job.id()).ok());

  ExportJob gone;
  EXPECT_EQ(server.Get(job.id(), &gone).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(server.Delete(job.id()).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(ExportServiceTest, HealthServiceReportsServing) {
  TestServer server;
  auto channel = NewChannel(server.address());
  grpc::GenericStub generic(channel);
  // grpc.health.v1.Health/Check with an empty request (the overall server status).
  grpc::Slice empty_message("");  // HealthCheckRequest{} encodes to no bytes.
  grpc::ByteBuffer request(&empty_message, 1);
  grpc::ByteBuffer response;
  auto context = Deadlined();
  absl::Notification done;
  grpc::Status status;
  generic.UnaryCall(context.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                    &response, [&](grpc::Status s) {
                      status = s;
                      done.Notify();
                    });
  done.WaitForNotification();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{status: SERVING (1)} is field 1, varint 1: bytes 0x08 0x01.
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

TEST(ExportServiceTest, ShutdownFinishesInFlightCallsAndRefusesNewOnes) {
  TestServer server;
  ExportJob held;
  ASSERT_TRUE(server.Create(AccountsRequest(), &held).ok());
  // Hold the committer inside a mutation so that the next create stays in flight.
  absl::Notification entered;
  absl::Notification release;
  absl::Cleanup release_on_exit = [&] {
    if (!release.HasBeenNotified()) release.Notify();  // Never leave the committer held.
  };
  absl::Notification update_done;
  server.server().job_manager()->Update(
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
  while (server.server().calls_in_flight() > 0 && absl::Now() < left_by) {
    std::this_thread::yield();
  }
  CreateExportJobRequest request = AccountsRequest();
  ExportJob in_flight_job;
  grpc::Status in_flight_status;
  absl::Notification in_flight_done;
  auto context = Deadlined();
  server.stub().async()->CreateExportJob(context.get(), &request, &in_flight_job,
                                         [&](grpc::Status status) {
                                           in_flight_status = status;
                                           in_flight_done.Notify();
                                         });

  // The create has reached the server (it waits behind the held mutation).
  const absl::Time arrived_by = absl::Now() + absl::Seconds(5);
  while (server.server().calls_in_flight() < 1 && absl::Now() < arrived_by) {
    std::this_thread::yield();
  }
  ASSERT_EQ(server.server().calls_in_flight(), 1);

  std::thread shutdown([&] { server.server().Shutdown(); });
  // Once draining has begun, new calls are refused at once.
  grpc::Status refused;
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  do {
    ExportJob ignored;
    refused = server.Get(held.id(), &ignored);
  } while (refused.ok() && absl::Now() < give_up);
  const bool answered_before_release = in_flight_done.HasBeenNotified();
  std::move(release_on_exit).Invoke();
  shutdown.join();
  in_flight_done.WaitForNotification();

  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.error_message(), HasSubstr("shutting down"));
  EXPECT_FALSE(answered_before_release);
  EXPECT_TRUE(in_flight_status.ok()) << in_flight_status.error_message();
  EXPECT_EQ(in_flight_job.status(), exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  EXPECT_TRUE(update_done.HasBeenNotified());
}

// Sends one ServerReflectionRequest{list_services: ""} and returns the raw response bytes.
class ListServicesCall : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  ListServicesCall(grpc::GenericStub& stub, grpc::ClientContext* context)
      : request_slice_(std::string("\x3a\x00", 2)), request_(&request_slice_, 1) {
    stub.PrepareBidiStreamingCall(context,
                                  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                  grpc::StubOptions(), this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&response_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (ok) {
      std::vector<grpc::Slice> slices;
      if (response_.Dump(&slices).ok()) {
        for (const auto& s : slices)
          bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
  }
  void OnDone(const grpc::Status& s) override {
    status = s;
    done.Notify();
  }
  std::string bytes;
  grpc::Status status;
  absl::Notification done;

 private:
  grpc::Slice request_slice_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
};

TEST(ExportServiceTest, ReflectionListsExportService) {
  TestServer server;
  grpc::GenericStub generic(NewChannel(server.address()));
  auto context = Deadlined();
  ListServicesCall call(generic, context.get());
  call.done.WaitForNotification();
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  EXPECT_THAT(call.bytes, HasSubstr("exportjobs.v1.ExportService"));
  EXPECT_THAT(call.bytes, HasSubstr("grpc.health.v1.Health"));
}

}  // namespace
}  // namespace exportd::testing
