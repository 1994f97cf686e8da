// WatchExportJob and WatchExportJobs over a real gRPC channel to a real server.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/test_server.h"

namespace exportd::testing {
namespace {

using exportjobs::v1::ExportJobEvent;
using exportjobs::v1::WatchExportJobRequest;
using exportjobs::v1::WatchExportJobsRequest;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// An open WatchExportJob stream read synchronously, every read bounded by the call deadline.
class JobWatch {
 public:
  JobWatch(ExportService::Stub& stub, const std::string& id, int64_t since_revision = 0)
      : context_(Deadlined()) {
    WatchExportJobRequest request;
    request.set_id(id);
    request.set_since_revision(since_revision);
    reader_ = stub.WatchExportJob(context_.get(), request);
  }

  // The next event; nullopt when the stream ended (then Finish() tells how).
  std::optional<ExportJobEvent> Next() {
    ExportJobEvent event;
    if (!reader_->Read(&event)) return std::nullopt;
    return event;
  }

  // Reads to the end; returns the revisions read.
  std::vector<int64_t> DrainRevisions(ExportJobEvent* last = nullptr) {
    std::vector<int64_t> revisions;
    while (auto event = Next()) {
      revisions.push_back(event->revision());
      if (last) *last = *event;
    }
    return revisions;
  }

  grpc::Status Finish() { return reader_->Finish(); }

 private:
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<ExportJobEvent>> reader_;
};

// Drives a job through server-side transitions, as the worker protocol does.
class Driver {
 public:
  explicit Driver(TestServer& server) : jobs_(server.server().job_manager()) {}

  absl::StatusOr<ExportJob> Apply(const std::string& id, JobManager::Mutation mutate) {
    absl::Notification done;
    absl::StatusOr<ExportJob> result;
    jobs_->Update(id, std::move(mutate), [&](absl::StatusOr<ExportJob> job) {
      result = std::move(job);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }

  absl::StatusOr<ExportJob> Progress(const std::string& id, int64_t records) {
    return Apply(id, [records](JobRecord& record) {
      record.mutable_job()->set_status(exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING);
      record.mutable_job()->mutable_progress()->set_records_processed(records);
      return absl::OkStatus();
    });
  }

  absl::StatusOr<ExportJob> Complete(const std::string& id) {
    return Apply(id, [](JobRecord& record) {
      record.mutable_job()->set_status(exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
      return absl::OkStatus();
    });
  }

 private:
  JobManager* jobs_;
};

std::vector<int64_t> Range(int64_t from, int64_t to) {
  std::vector<int64_t> v;
  for (int64_t r = from; r <= to; ++r) v.push_back(r);
  return v;
}

TEST(WatchTest, StartsWithSnapshotThenChangesAndEndsOkAfterTerminalState) {
  TestServer server;
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
  JobWatch watch(server.stub(), job.id());

  std::optional<ExportJobEvent> snapshot = watch.Next();
  ASSERT_TRUE(snapshot.has_value());
  ExportJob cancelled;
  ASSERT_TRUE(server.Cancel(job.id(), &cancelled).ok());
  std::optional<ExportJobEvent> change = watch.Next();
  ASSERT_TRUE(change.has_value());

  EXPECT_EQ(snapshot->kind(), ExportJobEvent::KIND_SNAPSHOT);
  EXPECT_EQ(snapshot->revision(), 1);
  EXPECT_EQ(snapshot->job().DebugString(), job.DebugString());
  EXPECT_EQ(change->kind(), ExportJobEvent::KIND_CHANGED);
  EXPECT_EQ(change->job().DebugString(), cancelled.DebugString());
  EXPECT_EQ(change->revision(), 2);
  EXPECT_FALSE(watch.Next().has_value());
  EXPECT_TRUE(watch.Finish().ok());
}

TEST(WatchTest, DeliversEveryChangeInOrder) {
  ServerOptions options;
  options.progress_interval = absl::ZeroDuration();  // Every progress report too.
  TestServer server(options);
  Driver driver(server);
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
  JobWatch watch(server.stub(), job.id());
  ASSERT_TRUE(watch.Next().has_value());

  std::vector<int64_t> revisions = {1};
  for (int i = 1; i <= 40; ++i) {
    ASSERT_TRUE(driver.Progress(job.id(), i * 100).ok());
    std::optional<ExportJobEvent> event = watch.Next();
    ASSERT_TRUE(event.has_value());
    EXPECT_EQ(event->job().progress().records_processed(), i * 100);
    revisions.push_back(event->revision());
  }
  ASSERT_TRUE(driver.Complete(job.id()).ok());
  ExportJobEvent last;
  for (int64_t r : watch.DrainRevisions(&last)) revisions.push_back(r);

  EXPECT_EQ(revisions, Range(1, 42));
  EXPECT_EQ(last.job().status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  EXPECT_TRUE(watch.Finish().ok());
}

TEST(WatchTest, ProgressIsThrottledPerJobButTheLatestAlwaysArrives) {
  ServerOptions options;
  options.progress_interval = absl::Milliseconds(300);
  TestServer server(options);
  Driver driver(server);
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
  JobWatch watch(server.stub(), job.id());
  ASSERT_TRUE(watch.Next().has_value());

  constexpr int kReports = 30;
  for (int i = 1; i <= kReports; ++i) ASSERT_TRUE(driver.Progress(job.id(), i).ok());
  // The held-back latest report arrives without any further change.
  std::vector<int64_t> seen;
  while (seen.empty() || seen.back() != kReports) {
    std::optional<ExportJobEvent> event = watch.Next();
    ASSERT_TRUE(event.has_value()) << "the latest progress never arrived";
    seen.push_back(event->job().progress().records_processed());
  }
  ASSERT_TRUE(driver.Complete(job.id()).ok());
  ExportJobEvent last;
  watch.DrainRevisions(&last);

  EXPECT_LT(seen.size(), static_cast<size_t>(kReports));
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(last.job().status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  EXPECT_TRUE(watch.Finish().ok());
}

TEST(WatchTest, TerminalJobSendsItsSnapshotAndEnds) {
  TestServer server;
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
  ASSERT_TRUE(server.Cancel(job.id(), &job).ok());

  JobWatch watch(server.stub(), job.id());

  EXPECT_THAT(watch.DrainRevisions(), ElementsAreArray({2}));
  EXPECT_TRUE(watch.Finish().ok());
}

TEST(WatchTest, UnknownJobIsNotFound) {
  TestServer server;
  JobWatch watch(server.stub(), "00000000000000000000abcd");
  EXPECT_FALSE(watch.Next().has_value());
  grpc::Status status = watch.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(WatchTest, BadArgumentsAreInvalidArgument) {
  TestServer server;
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
  JobWatch negative(server.stub(), job.id(), -1);
  JobWatch malformed(server.stub(), "nope");

  EXPECT_FALSE(negative.Next().has_value());
  grpc::Status negative_status = negative.Finish();
  EXPECT_EQ(negative_status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(negative_status.error_message(), HasSubstr("since_revision: must not be negative"));
  EXPECT_FALSE(malformed.Next().has_value());
  EXPECT_EQ(malformed.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(WatchTest, ResumesAfterSinceRevision) {
  TestServer server;
  Driver driver(server);
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(driver.Progress(job.id(), i).ok());
  ASSERT_TRUE(driver.Complete(job.id()).ok());  // Revision 5.

  JobWatch from_two(server.stub(), job.id(), 2);
  JobWatch from_five(server.stub(), job.id(), 5);
  JobWatch from_six(server.stub(), job.id(), 6);

  EXPECT_THAT(from_two.DrainRevisions(), ElementsAreArray({3, 4, 5}));
  EXPECT_TRUE(from_two.Finish().ok());
  EXPECT_TRUE(from_five.DrainRevisions().empty());
  EXPECT_TRUE(from_five.Finish().ok());
  EXPECT_TRUE(from_six.DrainRevisions().empty());
  EXPECT_EQ(from_six.Finish().error_code(), grpc::StatusCode::OUT_OF_RANGE);
}

TEST(WatchTest, ResumeAtTheCurrentRevisionGetsOnlyLaterChanges) {
  TestServer server;
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
  JobWatch watch(server.stub(), job.id(), 1);

  // Whether the cancel lands before or after the server registers the watch, revision 2 comes
  // (from the hub or from the stored events) and revision 1 does not.
  ExportJob cancelled;
  ASSERT_TRUE(server.Cancel(job.id(), &cancelled).ok());

  EXPECT_THAT(watch.DrainRevisions(), ElementsAreArray({2}));
  EXPECT_TRUE(watch.Finish().ok());
}

TEST(WatchTest, SlowWatcherIsCoalescedAndStillGetsTheTerminalState) {
  TestServer server;
  Driver driver(server);
  CreateExportJobRequest request = AccountsRequest();
  // ~60 KB per event, so that a reader that does not read fills the flow-control windows fast.
  (*request.mutable_filters()->mutable_fields())["name"].set_string_value(std::string(60'000, 'x'));
  ExportJob job;
  ASSERT_TRUE(server.Create(request, &job).ok());
  JobWatch slow(server.stub(), job.id());
  ASSERT_TRUE(slow.Next().has_value());  // Registered: from here on it reads nothing.

  constexpr int kUpdates = 400;  // ~24 MB of events if none were coalesced.
  for (int i = 1; i <= kUpdates; ++i) ASSERT_TRUE(driver.Progress(job.id(), i).ok());
  ASSERT_TRUE(driver.Complete(job.id()).ok());
  ExportJob now;
  ASSERT_TRUE(server.Get(job.id(), &now).ok());  // The server answers while the watcher lags.

  ExportJobEvent last;
  std::vector<int64_t> revisions = slow.DrainRevisions(&last);

  EXPECT_LT(revisions.size(), static_cast<size_t>(kUpdates + 1));
  EXPECT_TRUE(std::is_sorted(revisions.begin(), revisions.end()));
  EXPECT_EQ(std::adjacent_find(revisions.begin(), revisions.end()), revisions.end());
  EXPECT_GT(revisions.front(), 1);
  EXPECT_EQ(last.revision(), kUpdates + 2);
  EXPECT_EQ(last.job().status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  EXPECT_TRUE(slow.Finish().ok());
}

// Many WatchExportJob streams read by callback reactors: no thread per watcher on either side.
class WatcherCrowd {
 public:
  class Watcher : public grpc::ClientReadReactor<ExportJobEvent> {
   public:
    Watcher(WatcherCrowd* crowd, ExportService::Stub* stub, const std::string& id)
        : crowd_(crowd), context_(Deadlined()) {
      request_.set_id(id);
      stub->async()->WatchExportJob(context_.get(), &request_, this);
      StartRead(&event_);
      StartCall();
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;
      revisions.push_back(event_.revision());
      if (revisions.size() == 1) crowd_->Count(&crowd_->snapshots_);
      StartRead(&event_);
    }
    void OnDone(const grpc::Status& s) override {
      status = s;
      crowd_->Count(&crowd_->finished_);
    }
    std::vector<int64_t> revisions;
    grpc::Status status;

   private:
    WatcherCrowd* crowd_;
    std::unique_ptr<grpc::ClientContext> context_;
    WatchExportJobRequest request_;
    ExportJobEvent event_;
  };

  // `watchers` streams over `channels` channels; watcher i watches ids[i % ids.size()].
  WatcherCrowd(const std::string& address, const std::vector<std::string>& ids, int watchers,
               int channels) {
    for (int c = 0; c < channels; ++c) {
      stubs_.push_back(ExportService::NewStub(NewChannel(address, c)));
    }
    for (int i = 0; i < watchers; ++i) {
      watchers_.push_back(
          std::make_unique<Watcher>(this, stubs_[i % channels].get(), ids[i % ids.size()]));
    }
  }

  void AwaitSnapshots() { Await(&snapshots_); }
  void AwaitFinished() { Await(&finished_); }
  const std::vector<std::unique_ptr<Watcher>>& watchers() const { return watchers_; }

 private:
  void Count(int* counter) {
    absl::MutexLock lock(&mu_);
    ++*counter;
  }
  void Await(int* counter) {
    absl::MutexLock lock(&mu_);
    const int want = static_cast<int>(watchers_.size());
    auto reached = [&] { return *counter == want; };
    mu_.Await(absl::Condition(&reached));
  }

  absl::Mutex mu_;
  int snapshots_ = 0;
  int finished_ = 0;
  std::vector<std::unique_ptr<ExportService::Stub>> stubs_;
  std::vector<std::unique_ptr<Watcher>> watchers_;
};

TEST(WatchTest, ThousandsOfWatchersOnOneJobAllSeeEveryChange) {
  TestServer server;
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
  WatcherCrowd crowd(server.address(), {job.id()}, 2000, 8);
  crowd.AwaitSnapshots();

  ExportJob cancelled;
  ASSERT_TRUE(server.Cancel(job.id(), &cancelled).ok());
  crowd.AwaitFinished();

  int complete = 0;
  for (const auto& w : crowd.watchers()) {
    if (w->status.ok() && w->revisions == std::vector<int64_t>{1, 2}) ++complete;
  }
  EXPECT_EQ(complete, 2000);
}

TEST(WatchTest, ThousandsOfWatchersOnManyJobsEachSeeTheirJobsChanges) {
  TestServer server;
  std::vector<std::string> ids;
  for (int i = 0; i < 500; ++i) {
    ExportJob job;
    ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
    ids.push_back(job.id());
  }
  WatcherCrowd crowd(server.address(), ids, 2000, 8);
  crowd.AwaitSnapshots();

  for (const std::string& id : ids) {
    ExportJob cancelled;
    ASSERT_TRUE(server.Cancel(id, &cancelled).ok());
  }
  crowd.AwaitFinished();

  int complete = 0;
  for (const auto& w : crowd.watchers()) {
    if (w->status.ok() && w->revisions == std::vector<int64_t>{1, 2}) ++complete;
  }
  EXPECT_EQ(complete, 2000);
}

TEST(WatchTest, ShutdownEndsWatchersUnavailableAfterTheirLatestState) {
  TestServer server;
  ExportJob job;
  ASSERT_TRUE(server.Create(AccountsRequest(), &job).ok());
  JobWatch watch(server.stub(), job.id());
  ASSERT_TRUE(watch.Next().has_value());

  server.server().Shutdown();

  EXPECT_FALSE(watch.Next().has_value());
  grpc::Status status = watch.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
}

// An open WatchExportJobs stream; construction returns once the server has registered it.
class AllJobsWatch {
 public:
  AllJobsWatch(ExportService::Stub& stub, WatchExportJobsRequest request) : context_(Deadlined()) {
    reader_ = stub.WatchExportJobs(context_.get(), request);
    reader_->WaitForInitialMetadata();
  }
  std::optional<ExportJobEvent> Next() {
    ExportJobEvent event;
    if (!reader_->Read(&event)) return std::nullopt;
    return event;
  }
  void Cancel() { context_->TryCancel(); }

 private:
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<ExportJobEvent>> reader_;
};

std::string Describe(const ExportJobEvent& e) {
  return absl::StrCat(e.job().id(), "@", e.revision(), ":",
                      exportjobs::v1::ExportJobStatus_Name(e.job().status()), ":",
                      exportjobs::v1::ExportJobEvent::Kind_Name(e.kind()));
}

TEST(WatchAllTest, StreamsEveryMatchingChangeInCommitOrder) {
  TestServer server;
  WatchExportJobsRequest people_only;
  people_only.set_entity_type(exportjobs::v1::ENTITY_TYPE_PEOPLE);
  WatchExportJobsRequest cancelled_only;
  cancelled_only.set_status(exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  AllJobsWatch everything(server.stub(), {});
  AllJobsWatch people(server.stub(), people_only);
  AllJobsWatch cancelled(server.stub(), cancelled_only);

  ExportJob account;
  ExportJob person;
  ASSERT_TRUE(server.Create(AccountsRequest(), &account).ok());
  ASSERT_TRUE(server.Create(AccountsRequest(exportjobs::v1::ENTITY_TYPE_PEOPLE), &person).ok());
  ASSERT_TRUE(server.Cancel(person.id(), &person).ok());
  ASSERT_TRUE(server.Cancel(account.id(), &account).ok());
  ASSERT_TRUE(server.Delete(account.id()).ok());

  const std::string a = account.id();
  const std::string p = person.id();
  std::vector<std::string> all;
  for (int i = 0; i < 5; ++i) all.push_back(Describe(*everything.Next()));
  std::vector<std::string> people_seen;
  for (int i = 0; i < 2; ++i) people_seen.push_back(Describe(*people.Next()));
  std::vector<std::string> cancelled_seen;
  for (int i = 0; i < 3; ++i) cancelled_seen.push_back(Describe(*cancelled.Next()));

  EXPECT_THAT(all, ElementsAreArray({
                       a + "@1:EXPORT_JOB_STATUS_PENDING:KIND_CHANGED",
                       p + "@1:EXPORT_JOB_STATUS_PENDING:KIND_CHANGED",
                       p + "@2:EXPORT_JOB_STATUS_CANCELLED:KIND_CHANGED",
                       a + "@2:EXPORT_JOB_STATUS_CANCELLED:KIND_CHANGED",
                       a + "@2:EXPORT_JOB_STATUS_CANCELLED:KIND_DELETED",
                   }));
  EXPECT_THAT(people_seen, ElementsAreArray({
                               p + "@1:EXPORT_JOB_STATUS_PENDING:KIND_CHANGED",
                               p + "@2:EXPORT_JOB_STATUS_CANCELLED:KIND_CHANGED",
                           }));
  EXPECT_THAT(cancelled_seen, ElementsAreArray({
                                  p + "@2:EXPORT_JOB_STATUS_CANCELLED:KIND_CHANGED",
                                  a + "@2:EXPORT_JOB_STATUS_CANCELLED:KIND_CHANGED",
                                  a + "@2:EXPORT_JOB_STATUS_CANCELLED:KIND_DELETED",
                              }));
  everything.Cancel();
  people.Cancel();
  cancelled.Cancel();
}

TEST(WatchAllTest, UnknownFilterValueIsInvalidArgument) {
  TestServer server;
  WatchExportJobsRequest request;
  request.set_status(static_cast<exportjobs::v1::ExportJobStatus>(99));
  auto context = Deadlined();
  auto reader = server.stub().WatchExportJobs(context.get(), request);
  ExportJobEvent event;
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("status: unknown value 99"));
}

}  // namespace
}  // namespace exportd::testing
