// Checks the thread build's setup itself (docs/testing.md, "What is suppressed, and why"): state
// guarded by absl::Mutex, CondVar and Notification is not reported (tsan_absl_sync.cc makes
// Debian's uninstrumented Abseil visible), and a real race still is, also one inside a gRPC
// callback (the suppressions and the ignore list leave the project's own code alone).
//
// Built and run only in the thread build (-DEXPORTD_SANITIZE=thread). The racy cases run in a
// child process (this binary again, with --race=...) whose reports go to a temporary directory,
// so that the expected report does not fail this run.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {
namespace {

// ---- Clean: every shared access is ordered by an Abseil primitive. ----

TEST(TsanCheckTest, StateGuardedByAbslMutexIsNotReported) {
  absl::Mutex mu;
  int64_t counter = 0;  // Guarded by mu.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        absl::MutexLock lock(&mu);
        ++counter;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(counter, 8000);
}

TEST(TsanCheckTest, StateHandedOverByAwaitAndReaderLockIsNotReported) {
  absl::Mutex mu;
  std::vector<int> items;  // Guarded by mu.
  bool done = false;       // Guarded by mu.
  std::thread producer([&] {
    for (int i = 0; i < 500; ++i) {
      absl::MutexLock lock(&mu);
      items.push_back(i);
    }
    absl::MutexLock lock(&mu);
    done = true;
  });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&done));
  }
  producer.join();
  absl::ReaderMutexLock lock(&mu);
  EXPECT_EQ(items.size(), 500u);
}

TEST(TsanCheckTest, StateHandedOverByCondVarIsNotReported) {
  absl::Mutex mu;
  absl::CondVar cv;
  std::string message;  // Guarded by mu.
  std::thread writer([&] {
    absl::MutexLock lock(&mu);
    message = "written before the signal";
    cv.Signal();
  });
  {
    absl::MutexLock lock(&mu);
    while (message.empty()) cv.Wait(&mu);
    EXPECT_EQ(message, "written before the signal");
  }
  writer.join();
}

TEST(TsanCheckTest, StateHandedOverByNotificationIsNotReported) {
  std::string written;  // Written before Notify, read after the wait.
  absl::Notification ready;
  std::thread writer([&] {
    written = "set";
    ready.Notify();
  });
  ready.WaitForNotification();
  EXPECT_EQ(written, "set");
  writer.join();

  std::string polled;
  absl::Notification seen;
  std::thread notifier([&] {
    polled = "also set";
    seen.Notify();
  });
  while (!seen.HasBeenNotified()) std::this_thread::yield();  // The inline acquire load.
  EXPECT_EQ(polled, "also set");
  notifier.join();
}

// ---- Racy: run in a child, which must be reported. ----

int64_t g_unguarded = 0;

void RaceOnAPlainCounter() {
  std::thread other([] {
    for (int i = 0; i < 1000; ++i) ++g_unguarded;
  });
  for (int i = 0; i < 1000; ++i) ++g_unguarded;
  other.join();
}

// A callback of the gRPC callback API (the kind of code every server reactor is) writes what
// another thread writes too, with no lock: the suppressions for gRPC's own handoffs must not hide
// it. The other thread never touches gRPC, so nothing inside gRPC orders the two.
void RaceInAGrpcCallback() {
  class Echo : public grpc::ServerGenericBidiReactor {
   public:
    Echo() { StartRead(&request_); }
    void OnReadDone(bool ok) override {
      ++g_unguarded;  // The race.
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      StartWrite(&request_);
    }
    void OnWriteDone(bool) override { StartRead(&request_); }
    void OnDone() override { delete this; }

   private:
    grpc::ByteBuffer request_;
  };
  struct Service : grpc::CallbackGenericService {
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
      return new Echo();
    }
  } echo_service;

  std::atomic<bool> stop{false};
  std::thread other([&] {
    // Relaxed: the flag orders nothing, so the writes below stay unordered with the callback's.
    while (!stop.load(std::memory_order_relaxed)) {
      ++g_unguarded;  // The other side of the race.
      std::this_thread::yield();
    }
  });

  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&echo_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) std::_Exit(3);

  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  for (int i = 0; i < 20; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Slice slice("ping");
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    absl::Notification done;
    grpc::Status status;
    stub.UnaryCall(&context, "/exportd.check.Echo/Ping", grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
    done.WaitForNotification();
    if (!status.ok()) std::_Exit(4);
  }
  stop.store(true, std::memory_order_relaxed);
  other.join();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

// Runs this binary again with --race=`which` under the run's TSAN_OPTIONS plus a log_path of its
// own; returns the child's exit status and the reports it wrote.
struct ChildRun {
  int exit_code = -1;
  std::string reports;
};

std::string g_self;

ChildRun RunRacyChild(const std::string& which) {
  absl::StatusOr<test_support::TempDir> dir = test_support::TempDir::Create("exportd-tsan-check-");
  EXPECT_TRUE(dir.ok()) << dir.status();
  if (!dir.ok()) return {};
  const std::string log = dir->path() + "/report";
  // TSan's runtime reads UBSAN_OPTIONS after TSAN_OPTIONS (its common flags too), so the log
  // path goes into both.
  auto with_log = [&](const char* variable, const std::string& extra) {
    const char* inherited = std::getenv(variable);
    return std::string(inherited == nullptr ? "" : inherited) + ":log_path=" + log + extra;
  };
  const std::string tsan_options = with_log("TSAN_OPTIONS", ":halt_on_error=0:exitcode=66");
  const std::string ubsan_options = with_log("UBSAN_OPTIONS", "");
  const pid_t pid = fork();
  if (pid == 0) {
    setenv("TSAN_OPTIONS", tsan_options.c_str(), 1);
    setenv("UBSAN_OPTIONS", ubsan_options.c_str(), 1);
    const std::string flag = "--race=" + which;
    execl(g_self.c_str(), g_self.c_str(), flag.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ChildRun run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  for (const auto& entry : std::filesystem::directory_iterator(dir->path())) {
    std::ifstream in(entry.path());
    run.reports.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return run;
}

TEST(TsanCheckTest, AnUnguardedCounterIsReported) {
  const ChildRun run = RunRacyChild("counter");
  EXPECT_EQ(run.exit_code, 66);
  EXPECT_THAT(run.reports, ::testing::HasSubstr("WARNING: ThreadSanitizer: data race"));
  EXPECT_THAT(run.reports, ::testing::HasSubstr("RaceOnAPlainCounter"));
}

TEST(TsanCheckTest, ARaceInAGrpcCallbackIsReported) {
  const ChildRun run = RunRacyChild("grpc");
  EXPECT_EQ(run.exit_code, 66);
  EXPECT_THAT(run.reports, ::testing::HasSubstr("WARNING: ThreadSanitizer: data race"));
  EXPECT_THAT(run.reports, ::testing::HasSubstr("OnReadDone"));
}

}  // namespace
}  // namespace exportd::testing

int main(int argc, char** argv) {
  exportd::testing::g_self = std::filesystem::read_symlink("/proc/self/exe").string();
  if (argc == 2 && std::string(argv[1]) == "--race=counter") {
    exportd::testing::RaceOnAPlainCounter();
    return 0;
  }
  if (argc == 2 && std::string(argv[1]) == "--race=grpc") {
    exportd::testing::RaceInAGrpcCallback();
    return 0;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
