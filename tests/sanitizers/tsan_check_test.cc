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

// A server of `service` on a free loopback port (set in *port); null when it cannot start.
std::unique_ptr<grpc::Server> StartOnLoopback(grpc::CallbackGenericService* service, int* port) {
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), port);
  builder.RegisterCallbackGenericService(service);
  return builder.BuildAndStart();
}

// Streams whose reactors, on both sides, keep plain (unguarded) state that each callback reads
// and writes and the next callback of the same stream, often on another gRPC thread, takes over;
// the server's OnDone destroys it. Half the streams are cancelled by the client halfway, so the
// server's OnDone also comes after OnCancel. gRPC orders a callback after the operation it
// completes was started, and OnDone after every other callback; tsan_grpc_callbacks.cc makes
// that order visible. Returns whether every stream ended as
// expected. Also run in a child with that order hidden (EXPORTD_TSAN_GRPC_ORDER=0), where the
// same handoffs must be reported.
bool HandOffBetweenCallbacks(int streams, int round_trips) {
  // The server echoes each message; its state lives only in the reactor.
  class Echo : public grpc::ServerGenericBidiReactor {
   public:
    Echo() { StartRead(&message_); }
    void OnReadDone(bool ok) override {
      log_ += ok ? "r" : "x";
      if (!ok) return Finish(grpc::Status::OK);  // The end of the stream, or a cancel.
      StartWrite(&message_);
    }
    void OnWriteDone(bool ok) override {
      log_ += "w";
      if (!ok) return Finish(grpc::Status::CANCELLED);
      StartRead(&message_);
    }
    void OnDone() override { delete this; }  // Destroys log_, last written by another callback.

   private:
    grpc::ByteBuffer message_;
    std::string log_;
  };
  struct Service : grpc::CallbackGenericService {
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
      return new Echo();
    }
  } echo_service;

  // The client sends `round_trips` messages one at a time: each write's callback starts the read
  // of its echo, whose callback starts the next write.
  class Pinger : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    // A cancelling pinger cancels the call halfway instead of ending it.
    Pinger(grpc::GenericStub* stub, int round_trips, bool cancel)
        : round_trips_(round_trips), cancel_(cancel) {
      context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      stub->PrepareBidiStreamingCall(&context_, "/exportd.check.Echo/Chat", grpc::StubOptions(),
                                     this);
      Send();
      StartCall();
    }
    void OnWriteDone(bool ok) override {
      if (!ok) return;  // The call failed; OnDone follows.
      StartRead(&reply_);
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;
      ++echoed_;
      if (cancel_ && echoed_ == round_trips_ / 2) return context_.TryCancel();
      if (echoed_ == round_trips_) return StartWritesDone();
      Send();
    }
    void OnDone(const grpc::Status& status) override {
      ok_ = cancel_ ? status.error_code() == grpc::StatusCode::CANCELLED
                    : status.ok() && echoed_ == round_trips_;
      done_.Notify();
    }
    bool Await() {
      done_.WaitForNotification();
      return ok_;
    }

   private:
    void Send() {
      slice_ = grpc::Slice(std::to_string(echoed_));
      request_ = grpc::ByteBuffer(&slice_, 1);
      StartWrite(&request_);
    }
    const int round_trips_;
    const bool cancel_;
    grpc::ClientContext context_;
    grpc::Slice slice_;
    grpc::ByteBuffer request_;
    grpc::ByteBuffer reply_;
    int echoed_ = 0;
    bool ok_ = false;
    absl::Notification done_;
  };

  int port = 0;
  std::unique_ptr<grpc::Server> server = StartOnLoopback(&echo_service, &port);
  if (server == nullptr) return false;
  // Four connections (channels with different arguments share none), so that gRPC spreads the
  // streams' callbacks over its threads.
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (int c = 0; c < 4; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("exportd.check.connection", c);
    stubs.push_back(std::make_unique<grpc::GenericStub>(grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args)));
  }
  std::vector<std::unique_ptr<Pinger>> pingers;
  for (int i = 0; i < streams; ++i) {
    pingers.push_back(
        std::make_unique<Pinger>(stubs[i % 4].get(), round_trips, /*cancel=*/i % 2 == 1));
  }
  bool all_ok = true;
  for (auto& pinger : pingers) all_ok = pinger->Await() && all_ok;
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return all_ok;
}

TEST(TsanCheckTest, StateHandedBetweenGrpcCallbacksIsNotReported) {
  EXPECT_TRUE(HandOffBetweenCallbacks(/*streams=*/16, /*round_trips=*/200));
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
  std::unique_ptr<grpc::Server> server = StartOnLoopback(&echo_service, &port);
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
// own, and `environment` ("NAME=value") added; returns the child's exit status and the reports it
// wrote.
struct ChildRun {
  int exit_code = -1;
  std::string reports;
};

std::string g_self;

ChildRun RunRacyChild(const std::string& which, const std::vector<std::string>& environment = {}) {
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
    for (const std::string& variable : environment) putenv(const_cast<char*>(variable.c_str()));
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

TEST(TsanCheckTest, WithoutGrpcsOrderTheSameHandoffIsReported) {
  // Whether TSan sees a handoff depends on the threads gRPC happens to run the callbacks on, and
  // on the locks inside gRPC they happen to share: about three runs in four report on a quiet
  // machine, two in five on a busy one. Up to 20 runs, so that the check all but never misses.
  ChildRun run;
  for (int attempt = 0; attempt < 20 && run.exit_code != 66; ++attempt) {
    run = RunRacyChild("handoff", {"EXPORTD_TSAN_GRPC_ORDER=0"});
    ASSERT_THAT(run.exit_code, ::testing::AnyOf(0, 66)) << run.reports;
  }
  EXPECT_EQ(run.exit_code, 66);
  EXPECT_THAT(run.reports, ::testing::HasSubstr("WARNING: ThreadSanitizer: data race"));
  EXPECT_THAT(run.reports, ::testing::ContainsRegex("Echo|Pinger"));
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
  if (argc == 2 && std::string(argv[1]) == "--race=handoff") {
    return exportd::testing::HandOffBetweenCallbacks(/*streams=*/16, /*round_trips=*/200) ? 0 : 1;
  }
  if (argc == 2 && std::string(argv[1]) == "--race=grpc") {
    exportd::testing::RaceInAGrpcCallback();
    return 0;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
