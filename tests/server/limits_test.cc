// The limits of the public API over real gRPC to a real server: the create rate and the active
// jobs of a tenant, open watch streams per tenant and per server, request and metadata sizes,
// and the keepalive policy. Every refusal is RESOURCE_EXHAUSTED naming the limit's flag, with a
// google.rpc.RetryInfo and a google.rpc.QuotaFailure in the error details.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "server/validation.h"
#include "tests/server/test_server.h"
#include "tests/status_matchers.h"

namespace exportd::testing {
namespace {

using exportjobs::v1::ExportJobEvent;
using ::testing::HasSubstr;

// The error details of a refused call.
struct Details {
  std::optional<absl::Duration> retry_delay;
  std::string subject;
  std::string description;
};

Details DetailsOf(const grpc::Status& status) {
  Details details;
  google::rpc::Status rich;
  if (!rich.ParseFromString(status.error_details())) return details;
  EXPECT_EQ(rich.code(), static_cast<int>(status.error_code()));
  for (const google::protobuf::Any& any : rich.details()) {
    google::rpc::RetryInfo retry;
    google::rpc::QuotaFailure quota;
    if (any.UnpackTo(&retry)) {
      details.retry_delay = absl::Seconds(retry.retry_delay().seconds()) +
                            absl::Nanoseconds(retry.retry_delay().nanos());
    } else if (any.UnpackTo(&quota) && quota.violations_size() == 1) {
      details.subject = quota.violations(0).subject();
      details.description = quota.violations(0).description();
    }
  }
  return details;
}

CreateExportJobRequest WithRequestId(const std::string& request_id) {
  CreateExportJobRequest request = AccountsRequest();
  request.set_request_id(request_id);
  return request;
}

TEST(CreateRateTest, ABurstIsAllowedThenRefusedWithTheTimeToTheNextToken) {
  FakeClock clock;
  ServerOptions options;
  options.clock = &clock;
  options.create_limits.create_rate_per_tenant = 10;
  options.create_limits.create_burst_per_tenant = 3;
  TestServer server(options);
  ExportJob job;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok()) << i;

  const grpc::Status refused = server.Create(AccountsRequest(), &job);
  ASSERT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("create rate of tenant:(default) is over 10"));
  const Details details = DetailsOf(refused);
  ASSERT_TRUE(details.retry_delay.has_value());
  EXPECT_EQ(*details.retry_delay, absl::Milliseconds(100));  // one token at 10/s
  EXPECT_EQ(details.subject, "tenant:(default)");
  EXPECT_THAT(details.description, HasSubstr("--create_rate_per_tenant"));

  // A bad request is answered for what it is and takes no token.
  CreateExportJobRequest bad = AccountsRequest();
  bad.add_fields("no_such_field");
  clock.Advance(absl::Milliseconds(100));
  EXPECT_EQ(server.Create(bad, &job).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(server.Create(AccountsRequest(), &job).ok());
  EXPECT_EQ(server.Create(AccountsRequest(), &job).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  // The bucket refills at the rate, up to the burst.
  clock.Advance(absl::Seconds(60));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(server.Create(AccountsRequest(), &job).ok()) << i;
  EXPECT_EQ(server.Create(AccountsRequest(), &job).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

ServerOptions ActiveLimit(int64_t limit) {
  ServerOptions options;
  options.jobs.max_active_jobs_per_tenant = limit;
  return options;
}

TEST(ActiveJobsTest, ATenantAtItsLimitIsRefusedUntilAJobFinishes) {
  TestServer server(ActiveLimit(2));
  ExportJob first;
  ExportJob second;
  ExportJob job;
  ASSERT_TRUE(server.Create(WithRequestId("one"), &first).ok());
  ASSERT_TRUE(server.Create(AccountsRequest(), &second).ok());

  const grpc::Status refused = server.Create(AccountsRequest(), &job);
  ASSERT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("has 2 active (pending or processing) jobs"));
  const Details details = DetailsOf(refused);
  EXPECT_EQ(details.retry_delay, absl::Seconds(5));
  EXPECT_THAT(details.description, HasSubstr("2 active jobs per tenant"));

  // A retry of a create that was made returns its job: it is not a new active job.
  ExportJob again;
  ASSERT_TRUE(server.Create(WithRequestId("one"), &again).ok());
  EXPECT_EQ(again.id(), first.id());

  ASSERT_TRUE(server.Cancel(second.id(), &job).ok());
  EXPECT_TRUE(server.Create(AccountsRequest(), &job).ok());
  EXPECT_EQ(server.Create(AccountsRequest(), &job).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST(ActiveJobsTest, ConcurrentCreatesInOneGroupCommitGetExactlyTheLimit) {
  constexpr int kLimit = 5;
  constexpr int kCallers = 24;
  TestServer server(ActiveLimit(kLimit));
  std::vector<grpc::StatusCode> codes(kCallers);
  std::vector<std::thread> callers;
  absl::Notification go;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      auto stub = ExportService::NewStub(NewChannel(server.address(), i + 1));
      go.WaitForNotification();
      ExportJob job;
      codes[i] = stub->CreateExportJob(Deadlined().get(), AccountsRequest(), &job).error_code();
    });
  }
  go.Notify();
  for (std::thread& caller : callers) caller.join();
  int created = 0;
  for (grpc::StatusCode code : codes) {
    if (code == grpc::StatusCode::OK) {
      ++created;
    } else {
      EXPECT_EQ(code, grpc::StatusCode::RESOURCE_EXHAUSTED);
    }
  }
  EXPECT_EQ(created, kLimit);
}

TEST(ActiveJobsTest, EachTenantHasItsOwnLimit) {
  TestServer server(ActiveLimit(1));
  JobManager* jobs = server.server().job_manager();
  auto create = [&](const std::string& tenant) {
    absl::StatusOr<CreateExportJobRequest> normalized =
        ValidateAndNormalizeCreate(AccountsRequest(), CreateLimits{});
    EXPECT_TRUE(normalized.ok());
    absl::Notification done;
    absl::Status result;
    jobs->Create(*normalized, tenant, [&](absl::StatusOr<ExportJob> job) {
      result = job.status();
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  };
  EXPECT_OK(create("acme"));
  EXPECT_OK(create("globex"));
  EXPECT_THAT(create("acme"), StatusIs(absl::StatusCode::kResourceExhausted,
                                       HasSubstr("tenant:acme has 1 active")));
  EXPECT_THAT(create("globex"), StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST(ActiveJobsTest, TheStoredJobsCountAfterARestart) {
  test_support::TempDir dir;
  ServerOptions options = ActiveLimit(2);
  options.data_dir = dir.path();
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "127.0.0.1:0";
  options.insecure_no_auth = true;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<ExportServer> server, ExportServer::Start(options));
    auto stub = ExportService::NewStub(NewChannel(server->grpc_address()));
    ExportJob job;
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(stub->CreateExportJob(Deadlined().get(), AccountsRequest(), &job).ok());
    }
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ExportServer> server, ExportServer::Start(options));
  ASSERT_TRUE(server->job_manager()->AwaitCounted(absl::Now() + absl::Seconds(10)));
  auto stub = ExportService::NewStub(NewChannel(server->grpc_address()));
  ExportJob job;
  EXPECT_EQ(stub->CreateExportJob(Deadlined().get(), AccountsRequest(), &job).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

// An open watch of one job (its first event read), or the status it ended with at once.
struct Watch {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReader<ExportJobEvent>> reader;
  grpc::Status refused;  // Set when the watch was refused.
};

Watch StartWatch(ExportService::Stub& stub, const std::string& id) {
  Watch watch;
  watch.context = Deadlined();
  exportjobs::v1::WatchExportJobRequest request;
  request.set_id(id);
  watch.reader = stub.WatchExportJob(watch.context.get(), request);
  ExportJobEvent event;
  if (watch.reader->Read(&event)) return watch;
  watch.refused = watch.reader->Finish();
  EXPECT_FALSE(watch.refused.ok());
  watch.reader.reset();
  return watch;
}

void EndWatch(Watch& watch) {
  watch.context->TryCancel();
  EXPECT_EQ(watch.reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  watch.reader.reset();
}

// Starts watches until one is open, for up to 10 s: a stream's slot is given back once gRPC is
// done with it, shortly after the client cancelled it.
Watch StartWatchOnceFree(ExportService::Stub& stub, const std::string& id) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (true) {
    Watch watch = StartWatch(stub, id);
    if (watch.reader || absl::Now() > deadline ||
        watch.refused.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
      return watch;
    }
  }
}

void ExpectWatcherLimits(const WatchLimits& limits, const std::string& expected_message,
                         const std::string& expected_flag) {
  ServerOptions options;
  options.watch_limits = limits;
  TestServer server(options);
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());

  Watch first = StartWatch(server.stub(), job.id());
  Watch second = StartWatch(server.stub(), job.id());
  ASSERT_TRUE(first.reader && second.reader);
  Watch third = StartWatch(server.stub(), job.id());
  ASSERT_FALSE(third.reader);
  EXPECT_EQ(third.refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(third.refused.error_message(), HasSubstr(expected_message));
  const Details details = DetailsOf(third.refused);
  EXPECT_EQ(details.retry_delay, absl::Seconds(1));
  EXPECT_THAT(details.description, HasSubstr(expected_flag));

  // A watch of all jobs counts too.
  {
    auto context = Deadlined();
    auto all = server.stub().WatchExportJobs(context.get(), {});
    ExportJobEvent event;
    EXPECT_FALSE(all->Read(&event));
    EXPECT_EQ(all->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }

  EndWatch(first);
  Watch again = StartWatchOnceFree(server.stub(), job.id());
  EXPECT_TRUE(again.reader) << again.refused.error_message();
  if (again.reader) EndWatch(again);
  EndWatch(second);
}

TEST(WatcherLimitsTest, PerServer) {
  WatchLimits limits;
  limits.max_watchers = 2;
  ExpectWatcherLimits(limits, "the server has 2 open watch streams", "--max_watchers)");
}

TEST(WatcherLimitsTest, PerTenant) {
  WatchLimits limits;
  limits.max_watchers_per_tenant = 2;
  limits.max_watchers = 100;
  ExpectWatcherLimits(limits, "tenant:(default) has 2 open watch streams",
                      "--max_watchers_per_tenant");
}

TEST(RequestSizeTest, ARequestOverTheLimitIsRefusedBeforeItIsRead) {
  ServerOptions options;
  options.workers.max_chunk_bytes = 1024;  // Requests up to 1024 + 64 KiB.
  TestServer server(options);
  ExportJob job;
  exportjobs::v1::GetExportJobRequest small;
  small.set_id(std::string(60 << 10, 'x'));
  EXPECT_EQ(server.stub().GetExportJob(Deadlined().get(), small, &job).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // Read, and refused for what it says.
  exportjobs::v1::GetExportJobRequest large;
  large.set_id(std::string(70 << 10, 'x'));
  EXPECT_EQ(server.stub().GetExportJob(Deadlined().get(), large, &job).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST(MetadataSizeTest, MetadataOverTheLimitIsRefused) {
  ServerOptions options;
  options.max_metadata_bytes = 4096;
  TestServer server(options);
  ExportJob job;
  auto fits = Deadlined();
  fits->AddMetadata("x-note", std::string(2000, 'a'));
  EXPECT_TRUE(server.stub().CreateExportJob(fits.get(), AccountsRequest(), &job).ok());
  auto too_large = Deadlined();
  too_large->AddMetadata("x-note", std::string(8000, 'a'));
  const grpc::Status refused =
      server.stub().CreateExportJob(too_large.get(), AccountsRequest(), &job);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
}

// A long-poll claim of `wait` on a channel that pings as often as gRPC lets a client (about
// once a second), with no job to claim: the call's result. A server whose policy refuses such
// pings ends the connection at the third early ping (a strike each), long before the wait ends.
grpc::Status ClaimWhilePinging(const std::string& address, absl::Duration wait) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 100);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // gRPC 1.51 also holds a client's own pings 5 minutes apart on a connection without data.
  args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS, 100);
  auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  auto workers = exportjobs::v1::WorkerService::NewStub(channel);
  exportjobs::v1::ClaimExportJobRequest request;
  request.set_worker_id("pinging-worker");
  request.mutable_wait()->set_seconds(absl::ToInt64Seconds(wait));
  exportjobs::v1::ClaimExportJobResponse response;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + wait + absl::Seconds(10)));
  grpc::Status status = workers->ClaimExportJob(&context, request, &response);
  EXPECT_FALSE(response.has_job());
  return status;
}

TEST(KeepaliveTest, PingsAsOftenAsThePolicyAllowsKeepTheCallAlive) {
  ServerOptions options;
  options.min_client_ping_interval = absl::Milliseconds(50);
  TestServer server(options);
  EXPECT_TRUE(ClaimWhilePinging(server.address(), absl::Seconds(4)).ok());
}

TEST(KeepaliveTest, PingsMoreOftenThanThePolicyAllowsEndTheConnection) {
  ServerOptions options;
  options.min_client_ping_interval = absl::Seconds(10);
  TestServer server(options);
  const grpc::Status status = ClaimWhilePinging(server.address(), absl::Seconds(25));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST(CheckLimitsTest, NamesTheFirstUnusableLimit) {
  ServerOptions options;
  EXPECT_OK(CheckLimits(options));
  options.create_limits.max_filters_depth = 0;
  EXPECT_THAT(CheckLimits(options), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("max_filters_depth: must be at least 1")));
  options = {};
  options.create_limits.create_rate_per_tenant = -1;
  EXPECT_THAT(CheckLimits(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("create_rate_per_tenant")));
  options = {};
  options.create_limits.max_part_size_bytes = 10;
  EXPECT_THAT(CheckLimits(options), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("max_part_size_bytes: must be at least")));
}

}  // namespace
}  // namespace exportd::testing
