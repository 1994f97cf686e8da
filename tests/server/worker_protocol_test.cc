// The worker protocol of the JobManager on a real RocksDbJobStore, with a FakeClock for lease
// expiry and retry backoff.
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/job_manager.h"
#include "server/validation.h"
#include "storage/rocksdb_job_store.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {
namespace {

using ::exportd::test_support::TempDir;
using exportjobs::v1::ExportPart;
using ::testing::HasSubstr;
using Claimed = JobManager::Claimed;

constexpr auto kPending = exportjobs::v1::EXPORT_JOB_STATUS_PENDING;
constexpr auto kProcessing = exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING;
constexpr auto kCompleted = exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED;
constexpr auto kFailed = exportjobs::v1::EXPORT_JOB_STATUS_FAILED;
constexpr auto kCancelled = exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED;

template <typename T, typename Start>
absl::StatusOr<T> Wait(Start start) {
  absl::Notification done;
  absl::StatusOr<T> result = absl::UnknownError("no answer");
  start([&](absl::StatusOr<T> r) {
    result = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

ExportPart Part(int number, int64_t size, int64_t records, std::string sha) {
  ExportPart part;
  part.set_part_number(number);
  part.set_size_bytes(size);
  part.set_record_count(records);
  part.set_sha256(std::move(sha));
  return part;
}

class WorkerProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RocksDbJobStore::Options options;
    options.path = dir_.path() + "/jobs";
    auto store = RocksDbJobStore::Open(options);
    ASSERT_OK(store);
    store_ = *std::move(store);
    StartManager();
  }

  void StartManager() {
    JobManager::Options options;
    options.lease_duration = absl::Seconds(30);
    options.max_attempts = 3;
    options.retry_backoff = absl::Seconds(1);
    options.download_url = [](const std::string& id, const std::string&, int32_t part,
                              absl::Time expires) {
      return absl::StrCat("http://downloads/", id, part == 0 ? "" : absl::StrCat("/", part),
                          "?expires=", absl::ToUnixSeconds(expires));
    };
    options.discard_parts = [this](const std::string& id, int64_t epoch) {
      absl::MutexLock lock(&mu_);
      discarded_.push_back(absl::StrCat(id, "/", epoch));
    };
    jobs_.reset();
    auto manager =
        JobManager::Start(store_.get(), &clock_, &readers_, options, [](const JobChange&) {});
    ASSERT_OK(manager);
    jobs_ = *std::move(manager);
  }

  ExportJob Create(EntityType type = exportjobs::v1::ENTITY_TYPE_ACCOUNTS) {
    exportjobs::v1::CreateExportJobRequest request;
    request.set_entity_type(type);
    auto normalized = ValidateAndNormalizeCreate(request, CreateLimits{});
    EXPECT_OK(normalized);
    auto job = Wait<ExportJob>([&](auto done) { jobs_->Create(*normalized, "", std::move(done)); });
    EXPECT_OK(job);
    clock_.Advance(absl::Milliseconds(1));  // Distinct creation times.
    return job.ok() ? *job : ExportJob();
  }

  absl::StatusOr<Claimed> Claim(std::vector<EntityType> types = {},
                                absl::Duration wait = absl::ZeroDuration()) {
    return Wait<Claimed>(
        [&](auto done) { jobs_->Claim("worker-1", types, wait, std::move(done)); });
  }

  absl::StatusOr<exportjobs::v1::ReportProgressResponse> Progress(const std::string& id,
                                                                  const std::string& token,
                                                                  int64_t records = 10) {
    exportjobs::v1::ReportProgressRequest request;
    request.set_job_id(id);
    request.set_lease_token(token);
    request.set_records_processed(records);
    return Wait<exportjobs::v1::ReportProgressResponse>(
        [&](auto done) { jobs_->ReportProgress(request, std::move(done)); });
  }

  absl::StatusOr<ExportJob> Record(const std::string& id, const std::string& token,
                                   ExportPart part) {
    return Wait<ExportJob>([&](auto done) { jobs_->RecordPart(id, token, part, std::move(done)); });
  }

  absl::StatusOr<ExportJob> Complete(const std::string& id, const std::string& token,
                                     int64_t records, std::vector<ExportPart> parts) {
    exportjobs::v1::CompleteExportJobRequest request;
    request.set_job_id(id);
    request.set_lease_token(token);
    request.set_record_count(records);
    for (auto& p : parts) *request.add_parts() = p;
    return Wait<ExportJob>([&](auto done) { jobs_->Complete(request, std::move(done)); });
  }

  absl::StatusOr<ExportJob> Fail(const std::string& id, const std::string& token, bool retryable) {
    exportjobs::v1::FailExportJobRequest request;
    request.set_job_id(id);
    request.set_lease_token(token);
    request.set_error_message("source unreachable");
    request.set_retryable(retryable);
    return Wait<ExportJob>([&](auto done) { jobs_->Fail(request, std::move(done)); });
  }

  absl::StatusOr<ExportJob> Release(const std::string& id, const std::string& token) {
    return Wait<ExportJob>([&](auto done) { jobs_->Release(id, token, std::move(done)); });
  }

  absl::StatusOr<ExportJob> Cancel(const std::string& id) {
    return Wait<ExportJob>([&](auto done) { jobs_->Cancel(id, "", std::move(done)); });
  }

  absl::StatusOr<exportjobs::v1::BatchReportExportJobsResponse> Batch(
      const exportjobs::v1::BatchReportExportJobsRequest& request) {
    return Wait<exportjobs::v1::BatchReportExportJobsResponse>(
        [&](auto done) { jobs_->ReportBatch(request, std::move(done)); });
  }

  // Closes the manager and the store, and opens both again on the same directory.
  void RestartStore() {
    jobs_.reset();
    store_.reset();
    RocksDbJobStore::Options options;
    options.path = dir_.path() + "/jobs";
    auto store = RocksDbJobStore::Open(options);
    ASSERT_OK(store);
    store_ = *std::move(store);
    StartManager();
  }

  // Runs a Tick and waits until it has been applied (a Get queued behind it is answered).
  void Tick() {
    jobs_->Tick();
    // A mutation queued after the tick is applied after it.
    Wait<ExportJob>([&](auto done) {
      jobs_->Update(
          "000000000000000000000000", [](JobRecord&) { return absl::OkStatus(); }, std::move(done));
    }).IgnoreError();
  }

  JobRecord Stored(const std::string& id) {
    auto record = store_->Get(id);
    EXPECT_OK(record);
    return record.ok() ? *record : JobRecord();
  }

  std::vector<std::string> Discarded() {
    absl::MutexLock lock(&mu_);
    return discarded_;
  }

  TempDir dir_;
  FakeClock clock_;
  Executor readers_{"test-read", 2};
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<JobManager> jobs_;
  absl::Mutex mu_;
  std::vector<std::string> discarded_ ABSL_GUARDED_BY(mu_);
};

TEST_F(WorkerProtocolTest, ClaimTakesTheOldestReadyJobUnderANewLease) {
  ExportJob a = Create();
  ExportJob b = Create();

  ASSERT_OK_AND_ASSIGN(Claimed first, Claim());
  ASSERT_OK_AND_ASSIGN(Claimed second, Claim());
  ASSERT_OK_AND_ASSIGN(Claimed none, Claim());

  ASSERT_TRUE(first.job.has_value());
  EXPECT_EQ(first.job->id(), a.id());
  EXPECT_EQ(first.job->status(), kProcessing);
  EXPECT_EQ(first.job->attempt(), 1);
  EXPECT_EQ(first.lease.epoch(), 1);
  EXPECT_FALSE(first.lease.token().empty());
  EXPECT_EQ(FromProtoTime(first.lease.expires_at()), clock_.Now() + absl::Seconds(30));
  ASSERT_TRUE(second.job.has_value());
  EXPECT_EQ(second.job->id(), b.id());
  EXPECT_NE(second.lease.token(), first.lease.token());
  EXPECT_FALSE(none.job.has_value());
  EXPECT_EQ(Stored(a.id()).job().status(), kProcessing);
}

TEST_F(WorkerProtocolTest, ClaimHonoursEntityTypes) {
  Create(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  ExportJob people = Create(exportjobs::v1::ENTITY_TYPE_PEOPLE);

  ASSERT_OK_AND_ASSIGN(Claimed claimed, Claim({exportjobs::v1::ENTITY_TYPE_PEOPLE}));
  ASSERT_OK_AND_ASSIGN(Claimed none, Claim({exportjobs::v1::ENTITY_TYPE_PEOPLE}));

  ASSERT_TRUE(claimed.job.has_value());
  EXPECT_EQ(claimed.job->id(), people.id());
  EXPECT_FALSE(none.job.has_value());
}

TEST_F(WorkerProtocolTest, ConcurrentClaimsNeverShareAJob) {
  for (int i = 0; i < 40; ++i) Create();
  absl::Mutex mu;
  std::vector<std::string> claimed;
  int answered = 0;
  bool all = false;
  for (int i = 0; i < 80; ++i) {
    jobs_->Claim("w", {}, absl::ZeroDuration(), [&](absl::StatusOr<Claimed> c) {
      absl::MutexLock lock(&mu);
      if (c.ok() && c->job) claimed.push_back(c->job->id());
      all = ++answered == 80;
    });
  }
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(&all));

  EXPECT_EQ(claimed.size(), 40u);
  EXPECT_EQ(std::set<std::string>(claimed.begin(), claimed.end()).size(), 40u);
}

TEST_F(WorkerProtocolTest, AWaitingClaimGetsANewJobAtOnce) {
  absl::Notification answered;
  absl::StatusOr<Claimed> result;
  jobs_->Claim("w", {}, absl::Seconds(30), [&](absl::StatusOr<Claimed> c) {
    result = std::move(c);
    answered.Notify();
  });
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (jobs_->waiting_claims() == 0 && absl::Now() < give_up) std::this_thread::yield();
  ASSERT_EQ(jobs_->waiting_claims(), 1);
  EXPECT_FALSE(answered.HasBeenNotified());

  ExportJob job = Create();
  answered.WaitForNotification();

  ASSERT_OK(result);
  ASSERT_TRUE(result->job.has_value());
  EXPECT_EQ(result->job->id(), job.id());
  EXPECT_EQ(jobs_->waiting_claims(), 0);
}

TEST_F(WorkerProtocolTest, AWaitingClaimEndsWithoutAJobAfterItsWait) {
  absl::Notification answered;
  absl::StatusOr<Claimed> result;
  const absl::Time deadline = absl::Now() + absl::Milliseconds(5);
  jobs_->Claim("w", {}, absl::Milliseconds(5), [&](absl::StatusOr<Claimed> c) {
    result = std::move(c);
    answered.Notify();
  });
  while (absl::Now() <= deadline) std::this_thread::yield();

  Tick();
  answered.WaitForNotification();

  ASSERT_OK(result);
  EXPECT_FALSE(result->job.has_value());
}

TEST_F(WorkerProtocolTest, EveryCallWithAStaleTokenIsAbortedAndChangesNothing) {
  ExportJob job = Create();
  ASSERT_OK_AND_ASSIGN(Claimed claimed, Claim());
  const int64_t revision = Stored(job.id()).job().revision();
  const std::string stale = "not-the-token";

  EXPECT_THAT(Progress(job.id(), stale), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(Record(job.id(), stale, Part(1, 5, 1, "aa")), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(Complete(job.id(), stale, 1, {Part(1, 5, 1, "aa")}),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(Fail(job.id(), stale, true), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(Release(job.id(), stale), StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(Stored(job.id()).job().revision(), revision);
  EXPECT_EQ(Stored(job.id()).job().status(), kProcessing);
}

TEST_F(WorkerProtocolTest, LeaseExpiryRequeuesAfterBackoffUnderANewEpoch) {
  ExportJob job = Create();
  ASSERT_OK_AND_ASSIGN(Claimed first, Claim());
  clock_.Advance(absl::Seconds(31));

  EXPECT_THAT(Progress(job.id(), first.lease.token()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("expired")));
  Tick();
  JobRecord requeued = Stored(job.id());
  ASSERT_OK_AND_ASSIGN(Claimed too_early, Claim());
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(Claimed second, Claim());

  EXPECT_EQ(requeued.job().status(), kPending);
  EXPECT_EQ(FromProtoTime(requeued.ready_at()), clock_.Now());
  EXPECT_FALSE(too_early.job.has_value());
  ASSERT_TRUE(second.job.has_value());
  EXPECT_EQ(second.job->attempt(), 2);
  EXPECT_EQ(second.lease.epoch(), 2);
  EXPECT_THAT(Discarded(), ::testing::ElementsAre(job.id() + "/1"));
  EXPECT_THAT(Progress(job.id(), first.lease.token()), StatusIs(absl::StatusCode::kAborted));
  EXPECT_OK(Progress(job.id(), second.lease.token()));
}

TEST_F(WorkerProtocolTest, LeaseExpiryFailsTheJobOnceAttemptsAreUsed) {
  ExportJob job = Create();
  for (int attempt = 1; attempt <= 3; ++attempt) {
    clock_.Advance(absl::Minutes(10));  // Past any backoff.
    ASSERT_OK_AND_ASSIGN(Claimed claimed, Claim());
    ASSERT_TRUE(claimed.job.has_value()) << "attempt " << attempt;
    clock_.Advance(absl::Seconds(31));
    Tick();
  }

  JobRecord failed = Stored(job.id());
  EXPECT_EQ(failed.job().status(), kFailed);
  EXPECT_EQ(failed.job().error_message(), "lease expired; 3 attempts");
  EXPECT_TRUE(failed.job().has_completed_at());
}

TEST_F(WorkerProtocolTest, ProgressExtendsTheLeaseAndReachesTheJob) {
  ExportJob job = Create();
  ASSERT_OK_AND_ASSIGN(Claimed claimed, Claim());
  clock_.Advance(absl::Seconds(20));

  ASSERT_OK_AND_ASSIGN(auto response, Progress(job.id(), claimed.lease.token(), 1234));
  clock_.Advance(absl::Seconds(20));
  Tick();

  EXPECT_EQ(FromProtoTime(response.lease_expires_at()), clock_.Now() + absl::Seconds(10));
  EXPECT_FALSE(response.cancel_requested());
  EXPECT_EQ(Stored(job.id()).job().status(), kProcessing);
  EXPECT_EQ(Stored(job.id()).job().progress().records_processed(), 1234);
}

TEST_F(WorkerProtocolTest, CompleteNeedsTheManifestToMatchTheUploadedParts) {
  ExportJob job = Create();
  ASSERT_OK_AND_ASSIGN(Claimed claimed, Claim());
  const std::string& token = claimed.lease.token();
  ASSERT_OK(Record(job.id(), token, Part(2, 50, 5, "bb")));
  ASSERT_OK(Record(job.id(), token, Part(1, 99, 9, "old")));
  ASSERT_OK(Record(job.id(), token, Part(1, 100, 10, "aa")));  // Replaces the first upload.

  EXPECT_THAT(Complete(job.id(), token, 10, {Part(1, 100, 10, "aa")}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("part 2 was uploaded but is not in the manifest")));
  EXPECT_THAT(Complete(job.id(), token, 20,
                       {Part(1, 100, 10, "aa"), Part(2, 50, 5, "bb"), Part(3, 1, 5, "cc")}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("parts[2]: part 3 was not uploaded")));
  EXPECT_THAT(Complete(job.id(), token, 15, {Part(1, 100, 10, "aa"), Part(2, 50, 5, "xx")}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("parts[1]: ")));
  EXPECT_THAT(Complete(job.id(), token, 16, {Part(1, 100, 10, "aa"), Part(2, 50, 5, "bb")}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("record_count: 16")));
  EXPECT_THAT(Complete(job.id(), token, 5, {Part(2, 50, 5, "bb")}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parts[0].part_number")));
  EXPECT_EQ(Stored(job.id()).job().status(), kProcessing);

  ASSERT_OK_AND_ASSIGN(ExportJob done, Complete(job.id(), token, 15,
                                                {Part(1, 100, 10, "aa"), Part(2, 50, 5, "bb")}));

  EXPECT_EQ(done.status(), kCompleted);
  EXPECT_EQ(done.record_count(), 15);
  EXPECT_EQ(done.file_parts(), 2);
  EXPECT_EQ(done.file_size_bytes(), 150);
  EXPECT_EQ(FromProtoTime(done.completed_at()), clock_.Now());
  // Seven days on, rounded up to whole seconds (what download URLs carry).
  const absl::Time expires = FromProtoTime(done.expires_at());
  EXPECT_GE(expires, clock_.Now() + absl::Hours(24 * 7));
  EXPECT_LT(expires, clock_.Now() + absl::Hours(24 * 7) + absl::Seconds(1));
  EXPECT_EQ(expires, absl::FromUnixSeconds(absl::ToUnixSeconds(expires)));
  EXPECT_EQ(done.download_url(),
            absl::StrCat("http://downloads/", job.id(), "?expires=", absl::ToUnixSeconds(expires)));
  EXPECT_EQ(done.parts_size(), 2);
  EXPECT_EQ(
      done.parts(1).download_url(),
      absl::StrCat("http://downloads/", job.id(), "/2?expires=", absl::ToUnixSeconds(expires)));
  EXPECT_EQ(Stored(job.id()).job().DebugString(), done.DebugString());
  EXPECT_THAT(Progress(job.id(), token), StatusIs(absl::StatusCode::kAborted));
}

TEST_F(WorkerProtocolTest, OnlyAnExportOfNoRecordsCompletesWithoutParts) {
  ExportJob with_records = Create();
  ExportJob with_upload = Create();
  ExportJob empty = Create();
  ASSERT_OK_AND_ASSIGN(Claimed first, Claim());
  ASSERT_OK_AND_ASSIGN(Claimed second, Claim());
  ASSERT_OK_AND_ASSIGN(Claimed third, Claim());
  ASSERT_OK(Record(with_upload.id(), second.lease.token(), Part(1, 0, 0, "aa")));

  EXPECT_THAT(
      Complete(with_records.id(), first.lease.token(), 5, {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parts: must list at least part 1")));
  EXPECT_THAT(Complete(with_upload.id(), second.lease.token(), 0, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("part 1 was uploaded but is not in the manifest")));
  ASSERT_OK_AND_ASSIGN(ExportJob done, Complete(empty.id(), third.lease.token(), 0, {}));

  EXPECT_EQ(Stored(with_records.id()).job().status(), kProcessing);
  EXPECT_EQ(Stored(with_upload.id()).job().status(), kProcessing);
  EXPECT_EQ(done.status(), kCompleted);
  EXPECT_EQ(done.record_count(), 0);
  EXPECT_EQ(done.file_parts(), 0);
  EXPECT_EQ(done.file_size_bytes(), 0);
  EXPECT_EQ(done.parts_size(), 0);
  EXPECT_FALSE(done.download_url().empty());
  EXPECT_EQ(Stored(empty.id()).job().DebugString(), done.DebugString());
  // Completed once: the lease is gone.
  EXPECT_THAT(Complete(empty.id(), third.lease.token(), 0, {}),
              StatusIs(absl::StatusCode::kAborted));
}

TEST_F(WorkerProtocolTest, ABatchClaimTakesTheOldestReadyJobsEachUnderItsOwnLease) {
  ExportJob a = Create();
  ExportJob b = Create();
  ExportJob c = Create();
  auto claim = [&](int max_jobs) {
    return Wait<Claimed>([&](auto done) {
      jobs_->ClaimBatch("worker-1", {}, max_jobs, absl::ZeroDuration(), std::move(done));
    });
  };

  ASSERT_OK_AND_ASSIGN(Claimed two, claim(2));
  ASSERT_OK_AND_ASSIGN(Claimed rest, claim(10));
  ASSERT_OK_AND_ASSIGN(Claimed none, claim(10));

  ASSERT_TRUE(two.job.has_value());
  EXPECT_EQ(two.job->id(), a.id());
  ASSERT_EQ(two.more.size(), 1u);
  EXPECT_EQ(two.more[0].job().id(), b.id());
  EXPECT_EQ(two.more[0].job().status(), kProcessing);
  EXPECT_EQ(two.more[0].job().attempt(), 1);
  EXPECT_EQ(two.more[0].lease().epoch(), 1);
  EXPECT_NE(two.more[0].lease().token(), two.lease.token());
  EXPECT_EQ(Stored(b.id()).lease().token(), two.more[0].lease().token());
  ASSERT_TRUE(rest.job.has_value());
  EXPECT_EQ(rest.job->id(), c.id());
  EXPECT_TRUE(rest.more.empty());
  EXPECT_FALSE(none.job.has_value());
  EXPECT_TRUE(none.more.empty());
  // Fencing is per job: a's token is not b's lease.
  EXPECT_THAT(Progress(b.id(), two.lease.token()), StatusIs(absl::StatusCode::kAborted));
  EXPECT_OK(Progress(b.id(), two.more[0].lease().token()));
}

TEST_F(WorkerProtocolTest, ConcurrentBatchClaimsNeverShareAJob) {
  constexpr int kJobs = 40;
  for (int i = 0; i < kJobs; ++i) Create();
  absl::Mutex mu;
  std::vector<std::string> ids;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      auto claimed = Wait<Claimed>([&](auto done) {
        jobs_->ClaimBatch("worker-1", {}, 7, absl::ZeroDuration(), std::move(done));
      });
      ASSERT_OK(claimed);
      absl::MutexLock lock(&mu);
      if (claimed->job) ids.push_back(claimed->job->id());
      for (const auto& more : claimed->more) ids.push_back(more.job().id());
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(ids.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
}

TEST_F(WorkerProtocolTest, RetryableFailureRequeuesAndFinalFailureFails) {
  ExportJob job = Create();
  ASSERT_OK_AND_ASSIGN(Claimed first, Claim());
  ASSERT_OK_AND_ASSIGN(ExportJob retried, Fail(job.id(), first.lease.token(), true));
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(Claimed second, Claim());
  ASSERT_OK_AND_ASSIGN(ExportJob failed, Fail(job.id(), second.lease.token(), false));

  EXPECT_EQ(retried.status(), kPending);
  EXPECT_EQ(retried.error_message(), "");
  ASSERT_TRUE(second.job.has_value());
  EXPECT_EQ(failed.status(), kFailed);
  EXPECT_EQ(failed.error_message(), "source unreachable");
  EXPECT_THAT(Discarded(), ::testing::ElementsAre(job.id() + "/1", job.id() + "/2"));
}

TEST_F(WorkerProtocolTest, CancelOfAProcessingJobReachesTheWorkerWhichReleasesIt) {
  ExportJob job = Create();
  ASSERT_OK_AND_ASSIGN(Claimed claimed, Claim());
  ASSERT_OK(Cancel(job.id()));

  ASSERT_OK_AND_ASSIGN(auto response, Progress(job.id(), claimed.lease.token()));
  ASSERT_OK_AND_ASSIGN(ExportJob released, Release(job.id(), claimed.lease.token()));

  EXPECT_TRUE(response.cancel_requested());
  EXPECT_EQ(released.status(), kCancelled);
  EXPECT_THAT(Discarded(), ::testing::ElementsAre(job.id() + "/1"));
}

TEST_F(WorkerProtocolTest, LeaseExpiryOfACancelRequestedJobCancelsIt) {
  ExportJob job = Create();
  ASSERT_OK(Claim());
  ASSERT_OK(Cancel(job.id()));
  clock_.Advance(absl::Seconds(31));

  Tick();

  EXPECT_EQ(Stored(job.id()).job().status(), kCancelled);
}

TEST_F(WorkerProtocolTest, ReleaseRequeuesAtOnceWithoutUsingAnAttempt) {
  ExportJob job = Create();
  ASSERT_OK_AND_ASSIGN(Claimed first, Claim());
  ASSERT_OK_AND_ASSIGN(ExportJob released, Release(job.id(), first.lease.token()));
  ASSERT_OK_AND_ASSIGN(Claimed second, Claim());

  EXPECT_EQ(released.status(), kPending);
  EXPECT_EQ(released.attempt(), 0);
  ASSERT_TRUE(second.job.has_value());
  EXPECT_EQ(second.job->attempt(), 1);
  EXPECT_EQ(second.lease.epoch(), 2);
}

TEST_F(WorkerProtocolTest, TheJanitorRemovesExpiredFilesThenOldJobs) {
  ExportJob done = Create();
  ExportJob waiting = Create();
  ASSERT_OK_AND_ASSIGN(Claimed claimed, Claim({}, absl::ZeroDuration()));
  ASSERT_EQ(claimed.job->id(), done.id());
  ASSERT_OK(Record(done.id(), claimed.lease.token(), Part(1, 5, 1, "aa")));
  ASSERT_OK(Complete(done.id(), claimed.lease.token(), 1, {Part(1, 5, 1, "aa")}));
  auto sweep = [&] {
    return Wait<std::pair<int, int>>(
        [&](auto cb) { jobs_->Sweep(absl::Hours(24 * 30), std::move(cb)); });
  };

  ASSERT_OK_AND_ASSIGN(auto nothing_yet, sweep());
  clock_.Advance(absl::Hours(24 * 7) + absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(auto expired, sweep());
  ASSERT_OK_AND_ASSIGN(auto again, sweep());
  const JobRecord after_expiry = Stored(done.id());
  clock_.Advance(absl::Hours(24 * 30));
  ASSERT_OK_AND_ASSIGN(auto deleted, sweep());

  EXPECT_EQ(nothing_yet, std::make_pair(0, 0));
  EXPECT_EQ(expired, std::make_pair(1, 0));
  EXPECT_EQ(again, std::make_pair(0, 0));
  EXPECT_TRUE(after_expiry.parts_deleted());
  EXPECT_EQ(deleted, std::make_pair(0, 1));
  EXPECT_THAT(store_->Get(done.id()), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_OK(store_->Get(waiting.id()));  // Not finished: kept.
  EXPECT_THAT(Discarded(), ::testing::ElementsAre(done.id() + "/-1", done.id() + "/-1"));
}

TEST_F(WorkerProtocolTest, TheClaimQueueSurvivesARestart) {
  ExportJob a = Create();
  Create();
  ASSERT_OK_AND_ASSIGN(Claimed claimed_before, Claim());  // a
  StartManager();

  ASSERT_OK_AND_ASSIGN(Claimed after, Claim());

  ASSERT_TRUE(claimed_before.job.has_value());
  EXPECT_EQ(claimed_before.job->id(), a.id());
  ASSERT_TRUE(after.job.has_value());
  EXPECT_NE(after.job->id(), a.id());
}

// Reports of BatchReportExportJobs.
exportjobs::v1::JobReport ProgressReport(const std::string& id, const std::string& token,
                                         int64_t records) {
  exportjobs::v1::JobReport report;
  report.mutable_progress()->set_job_id(id);
  report.mutable_progress()->set_lease_token(token);
  report.mutable_progress()->set_records_processed(records);
  return report;
}

exportjobs::v1::JobReport CompleteReport(const std::string& id, const std::string& token,
                                         int64_t records = 0) {
  exportjobs::v1::JobReport report;
  report.mutable_complete()->set_job_id(id);
  report.mutable_complete()->set_lease_token(token);
  report.mutable_complete()->set_record_count(records);
  return report;
}

void AddClaim(exportjobs::v1::BatchReportExportJobsRequest& request, int max_jobs) {
  request.mutable_claim()->set_worker_id("worker-1");
  request.mutable_claim()->set_max_jobs(max_jobs);
}

TEST_F(WorkerProtocolTest, ABatchReportsProgressCompletesAndClaimsTheNextJobs) {
  ExportJob a = Create();
  ExportJob b = Create();
  ExportJob c = Create();
  ASSERT_OK_AND_ASSIGN(Claimed first, Claim());   // a
  ASSERT_OK_AND_ASSIGN(Claimed second, Claim());  // b
  exportjobs::v1::BatchReportExportJobsRequest request;
  *request.add_reports() = ProgressReport(a.id(), first.lease.token(), 7);
  *request.add_reports() = CompleteReport(b.id(), second.lease.token());
  AddClaim(request, 2);  // Only c is ready.

  ASSERT_OK_AND_ASSIGN(auto response, Batch(request));

  ASSERT_EQ(response.results_size(), 2);
  EXPECT_EQ(response.results(0).code(), 0) << response.results(0).message();
  EXPECT_TRUE(response.results(0).has_progress());
  EXPECT_EQ(response.results(1).code(), 0) << response.results(1).message();
  EXPECT_EQ(response.results(1).job().status(), kCompleted);
  ASSERT_EQ(response.claimed_size(), 1);
  EXPECT_EQ(response.claimed(0).job().id(), c.id());
  EXPECT_EQ(response.claimed(0).job().status(), kProcessing);
  EXPECT_EQ(response.claimed(0).lease().epoch(), 1);
  EXPECT_EQ(Stored(a.id()).job().progress().records_processed(), 7);
  EXPECT_EQ(Stored(a.id()).job().status(), kProcessing);
  EXPECT_EQ(Stored(b.id()).job().status(), kCompleted);
  EXPECT_EQ(Stored(c.id()).lease().token(), response.claimed(0).lease().token());
}

TEST_F(WorkerProtocolTest, ABatchReportOfTheSameJobSeesTheEarlierOne) {
  ExportJob a = Create();
  ASSERT_OK_AND_ASSIGN(Claimed claimed, Claim());
  exportjobs::v1::BatchReportExportJobsRequest request;
  *request.add_reports() = ProgressReport(a.id(), claimed.lease.token(), 3);
  *request.add_reports() = CompleteReport(a.id(), claimed.lease.token());
  *request.add_reports() = ProgressReport(a.id(), claimed.lease.token(), 4);  // Finished by now.

  ASSERT_OK_AND_ASSIGN(auto response, Batch(request));

  ASSERT_EQ(response.results_size(), 3);
  EXPECT_EQ(response.results(0).code(), 0);
  EXPECT_EQ(response.results(1).code(), 0);
  EXPECT_EQ(response.results(2).code(), static_cast<int>(absl::StatusCode::kAborted));
  EXPECT_EQ(response.results(1).job().revision(), a.revision() + 3);  // claim, progress, complete
  EXPECT_EQ(Stored(a.id()).job().status(), kCompleted);
  EXPECT_EQ(response.claimed_size(), 0);  // No claim asked for.
}

TEST_F(WorkerProtocolTest, RefusedReportsOfABatchChangeNothingAndTheOthersApply) {
  ExportJob stale = Create();
  ASSERT_OK_AND_ASSIGN(Claimed old_lease, Claim());  // stale, epoch 1
  // Its lease expires, and it is claimed again under epoch 2.
  clock_.Advance(absl::Seconds(31));
  Tick();
  clock_.Advance(absl::Seconds(2));  // Past the retry's backoff.
  ExportJob mismatch = Create();
  ExportJob fine = Create();
  ExportJob done = Create();
  ASSERT_OK_AND_ASSIGN(Claimed new_lease, Claim());
  ASSERT_TRUE(new_lease.job.has_value());
  ASSERT_EQ(new_lease.job->id(), stale.id());
  ASSERT_EQ(new_lease.lease.epoch(), 2);
  ASSERT_OK_AND_ASSIGN(Claimed m, Claim());  // mismatch
  ASSERT_OK_AND_ASSIGN(Claimed f, Claim());  // fine
  ASSERT_OK_AND_ASSIGN(Claimed d, Claim());  // done
  ASSERT_OK(Complete(done.id(), d.lease.token(), 0, {}));
  ASSERT_OK(Record(mismatch.id(), m.lease.token(), Part(1, 10, 2, std::string(64, 'a'))));
  const JobRecord stale_before = Stored(stale.id());
  const JobRecord mismatch_before = Stored(mismatch.id());
  const JobRecord done_before = Stored(done.id());

  exportjobs::v1::BatchReportExportJobsRequest request;
  *request.add_reports() = ProgressReport(stale.id(), old_lease.lease.token(), 5);  // epoch 1
  *request.add_reports() = CompleteReport(mismatch.id(), m.lease.token());  // part 1 uploaded
  *request.add_reports() = CompleteReport(done.id(), d.lease.token());      // already completed
  *request.add_reports() = CompleteReport(fine.id(), f.lease.token());
  *request.add_reports() = ProgressReport("000000000000000000000000", "token", 1);

  ASSERT_OK_AND_ASSIGN(auto response, Batch(request));

  ASSERT_EQ(response.results_size(), 5);
  EXPECT_EQ(response.results(0).code(), static_cast<int>(absl::StatusCode::kAborted));
  EXPECT_THAT(response.results(0).message(), HasSubstr("lease_token"));
  EXPECT_EQ(response.results(1).code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(response.results(1).message(), HasSubstr("part 1"));
  EXPECT_EQ(response.results(2).code(), static_cast<int>(absl::StatusCode::kAborted));
  EXPECT_EQ(response.results(3).code(), 0) << response.results(3).message();
  EXPECT_EQ(response.results(4).code(), static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_FALSE(response.results(0).has_progress());
  EXPECT_FALSE(response.results(1).has_job());
  EXPECT_EQ(Stored(stale.id()).DebugString(), stale_before.DebugString());
  EXPECT_EQ(Stored(mismatch.id()).DebugString(), mismatch_before.DebugString());
  EXPECT_EQ(Stored(done.id()).DebugString(), done_before.DebugString());
  EXPECT_EQ(Stored(fine.id()).job().status(), kCompleted);
}

TEST_F(WorkerProtocolTest, ABatchClaimTakesOnlyTheWantedTypesAndNeverWaits) {
  Create(exportjobs::v1::ENTITY_TYPE_PEOPLE);
  exportjobs::v1::BatchReportExportJobsRequest request;
  AddClaim(request, 3);
  request.mutable_claim()->add_entity_types(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);

  ASSERT_OK_AND_ASSIGN(auto response, Batch(request));

  EXPECT_EQ(response.claimed_size(), 0);
  EXPECT_EQ(jobs_->waiting_claims(), 0);
}

TEST_F(WorkerProtocolTest, WhatABatchChangedSurvivesARestart) {
  ExportJob a = Create();
  ExportJob b = Create();
  ExportJob c = Create();
  ASSERT_OK_AND_ASSIGN(Claimed first, Claim());   // a
  ASSERT_OK_AND_ASSIGN(Claimed second, Claim());  // b
  exportjobs::v1::BatchReportExportJobsRequest request;
  *request.add_reports() = CompleteReport(a.id(), first.lease.token());
  *request.add_reports() = ProgressReport(b.id(), second.lease.token(), 9);
  AddClaim(request, 1);
  ASSERT_OK_AND_ASSIGN(auto response, Batch(request));
  ASSERT_EQ(response.claimed_size(), 1);
  const std::string claimed_token = response.claimed(0).lease().token();

  RestartStore();

  EXPECT_EQ(Stored(a.id()).job().status(), kCompleted);
  EXPECT_EQ(Stored(b.id()).job().progress().records_processed(), 9);
  EXPECT_EQ(Stored(c.id()).job().status(), kProcessing);
  // The claimed job's lease holds after the restart: its worker goes on with it.
  EXPECT_OK(Progress(c.id(), claimed_token));
  ASSERT_OK_AND_ASSIGN(Claimed none, Claim());
  EXPECT_FALSE(none.job.has_value());
}

}  // namespace
}  // namespace exportd::testing
