// Liveness and readiness of a real in-process export-server: /healthz, /readyz, gRPC health
// checking (grpc.health.v1) and the exportd_ready gauge, while serving and while draining; and
// /readyz of an HttpServer whose readiness is a stand-in, for the states before serving.
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "server/http_server.h"
#include "storage/rocksdb_job_store.h"
#include "tests/http/http_client.h"
#include "tests/server/test_server.h"
#include "tests/status_matchers.h"

namespace exportd::testing {
namespace {

using ::testing::HasSubstr;

// grpc.health.v1.HealthCheckResponse.ServingStatus
constexpr int kServing = 1;
constexpr int kNotServing = 2;

// Calls grpc.health.v1.Health/Check for `service` ("" for the whole server) without the
// generated health stubs: the request is HealthCheckRequest{service} (field 1, a string), the
// answer HealthCheckResponse{status} (field 1, a varint). Returns the status, or -1 with the
// call's error in *error.
int HealthCheck(const std::string& address, const std::string& service, grpc::Status* error) {
  grpc::GenericStub generic(NewChannel(address, 11));
  std::string bytes;
  if (!service.empty()) {
    bytes.push_back('\x0a');
    bytes.push_back(static_cast<char>(service.size()));  // The names here are < 128 bytes.
    bytes += service;
  }
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
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
  *error = status;
  if (!status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return -1;
  std::string answer;
  for (const auto& s : slices) answer.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (answer.empty()) return 0;  // UNKNOWN, the default, is sent as no bytes.
  if (answer.size() != 2 || answer[0] != '\x08') return -1;
  return answer[1];
}

int HealthCheck(const std::string& address, const std::string& service) {
  grpc::Status error;
  const int status = HealthCheck(address, service, &error);
  EXPECT_TRUE(error.ok()) << service << ": " << error.error_message();
  return status;
}

// The value of an unlabelled sample in a /metrics body; -1 when absent.
double Sample(const std::string& metrics, const std::string& name) {
  const std::string prefix = name + " ";
  size_t at = metrics.find("\n" + prefix);
  if (at == std::string::npos) return -1;
  at += 1 + prefix.size();
  return std::stod(metrics.substr(at, metrics.find('\n', at) - at));
}

TEST(HealthTest, AServingServerIsLiveAndReady) {
  TestServer server;
  const std::string http = server.server().http_address();
  Reply healthz = HttpGet(http, "/healthz");
  EXPECT_EQ(healthz.status, 200);
  EXPECT_EQ(healthz.body, "ok");
  Reply readyz = HttpGet(http, "/readyz");
  EXPECT_EQ(readyz.status, 200);
  EXPECT_EQ(readyz.body, "ready");
  EXPECT_EQ(readyz.Header("Cache-Control"), "no-store");
  EXPECT_EQ(Fetch(http, "HEAD", "/readyz").status, 200);
  EXPECT_OK(server.server().Readiness());
  EXPECT_EQ(Sample(HttpGet(http, "/metrics").body, "exportd_ready"), 1);

  EXPECT_EQ(HealthCheck(server.address(), ""), kServing);
  EXPECT_EQ(HealthCheck(server.address(), "exportjobs.v1.ExportService"), kServing);
  EXPECT_EQ(HealthCheck(server.address(), "exportjobs.v1.WorkerService"), kServing);
  grpc::Status unknown;
  EXPECT_EQ(HealthCheck(server.address(), "exportjobs.v1.NoSuchService", &unknown), -1);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(HealthTest, ProbesNeedNoTokenWhenAuthenticationIsOn) {
  ServerOptions options;
  absl::StatusOr<TokenTable> table = TokenTable::Parse("admin-token-0000000001 root ops admin\n");
  ASSERT_OK(table.status());
  options.auth = Authenticator::FromTable(*std::move(table));
  TestServer server(options);
  const std::string http = server.server().http_address();
  EXPECT_EQ(HttpGet(http, "/healthz").status, 200);
  EXPECT_EQ(HttpGet(http, "/readyz").status, 200);
  // gRPC health checking is open too (load balancers and kubelets send no token)...
  EXPECT_EQ(HealthCheck(server.address(), ""), kServing);
  EXPECT_EQ(HealthCheck(server.address(), "exportjobs.v1.ExportService"), kServing);
  // ... while the API itself is not.
  ExportJob job;
  EXPECT_EQ(server.Create(AccountsRequest(), &job).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(HttpGet(http, "/metrics").status, 401);
}

TEST(HealthTest, ADrainingServerIsLiveButNotReady) {
  TestServer server;
  const std::string http = server.server().http_address();
  ExportJob held;
  ASSERT_TRUE(server.Create(AccountsRequest(), &held).ok());
  // Hold the committer inside a mutation and keep a create in flight behind it, so that the
  // shutdown drains (waits for that call) until the test releases the committer.
  absl::Notification entered;
  absl::Notification release;
  absl::Cleanup release_on_exit = [&] {
    if (!release.HasBeenNotified()) release.Notify();
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
  absl::Notification in_flight_done;
  auto context = Deadlined();
  server.stub().async()->CreateExportJob(context.get(), &request, &in_flight_job,
                                         [&](grpc::Status) { in_flight_done.Notify(); });
  const absl::Time arrived_by = absl::Now() + absl::Seconds(5);
  while (server.server().calls_in_flight() < 1 && absl::Now() < arrived_by) {
    std::this_thread::yield();
  }
  ASSERT_EQ(server.server().calls_in_flight(), 1);

  std::thread shutdown([&] { server.server().Shutdown(); });
  // Draining begins at once; the shutdown then waits for the held call.
  Reply readyz;
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  do {
    readyz = HttpGet(http, "/readyz");
  } while (readyz.status == 200 && absl::Now() < give_up);

  EXPECT_EQ(readyz.status, 503);
  EXPECT_EQ(readyz.body, "not ready: draining: the server is shutting down");
  EXPECT_THAT(server.server().Readiness(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("draining")));
  EXPECT_EQ(HttpGet(http, "/healthz").status, 200);
  EXPECT_EQ(Sample(HttpGet(http, "/metrics").body, "exportd_ready"), 0);
  EXPECT_EQ(HealthCheck(server.address(), ""), kNotServing);
  EXPECT_EQ(HealthCheck(server.address(), "exportjobs.v1.ExportService"), kNotServing);
  EXPECT_EQ(HealthCheck(server.address(), "exportjobs.v1.WorkerService"), kNotServing);
  EXPECT_FALSE(in_flight_done.HasBeenNotified());

  std::move(release_on_exit).Invoke();
  shutdown.join();
  in_flight_done.WaitForNotification();
  update_done.WaitForNotification();
}

// --- /readyz before the server serves: an HttpServer with a stand-in readiness ---

class ReadyzTest : public ::testing::Test {
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
    options.readiness = [this] {
      absl::MutexLock lock(&mu_);
      return readiness_;
    };
    ASSERT_OK_AND_ASSIGN(http_, HttpServer::Start(options));
  }

  void SetReadiness(absl::Status status) {
    absl::MutexLock lock(&mu_);
    readiness_ = std::move(status);
  }

  test_support::TempDir dir_;
  std::unique_ptr<RocksDbJobStore> store_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<DownloadSigner> signer_;
  absl::Mutex mu_;
  absl::Status readiness_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<HttpServer> http_;
};

TEST_F(ReadyzTest, NotReadyNamesTheReasonAndReadyFollows) {
  SetReadiness(absl::UnavailableError("starting: loading the claim queue"));
  Reply starting = HttpGet(http_->address(), "/readyz");
  EXPECT_EQ(starting.status, 503);
  EXPECT_EQ(starting.body, "not ready: starting: loading the claim queue");
  EXPECT_EQ(HttpGet(http_->address(), "/healthz").status, 200);

  SetReadiness(absl::OkStatus());
  Reply ready = HttpGet(http_->address(), "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ready");

  Reply post = Fetch(http_->address(), "POST", "/readyz", "x");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.Header("Allow"), "GET, HEAD");
}

}  // namespace
}  // namespace exportd::testing
