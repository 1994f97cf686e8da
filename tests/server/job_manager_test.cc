// JobManager on a real RocksDbJobStore: state transitions the public API cannot reach yet,
// group commit, and what happens when the store refuses a write.
#include "server/job_manager.h"

#include <openssl/sha.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "gtest/gtest.h"
#include "server/validation.h"
#include "storage/rocksdb_job_store.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {

using ::exportd::test_support::TempDir;
namespace {

using ::testing::HasSubstr;

// Forwards to a real store; Commit can be made to fail, and Commit and List can be held until
// released, to control what the real store cannot be made to do on demand.
class ControlledStore final : public JobStore {
 public:
  explicit ControlledStore(JobStore* real) : real_(real) {}

  absl::Status Commit(std::span<const JobChange> changes) override {
    {
      absl::MutexLock lock(&mu_);
      ++commits_;
      entered_ = true;
      mu_.Await(absl::Condition(
          +[](ControlledStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return !s->held_; },
          this));
      if (fail_) return absl::UnavailableError("disk on fire");
    }
    return real_->Commit(changes);
  }
  absl::StatusOr<JobRecord> Get(const std::string& id) const override { return real_->Get(id); }
  absl::StatusOr<ListResult> List(const ListQuery& q) const override {
    {
      absl::MutexLock lock(&mu_);
      list_entered_ = true;
      mu_.Await(absl::Condition(
          +[](const ControlledStore* s)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return !s->lists_held_; },
          this));
    }
    return real_->List(q);
  }
  absl::StatusOr<std::optional<std::string>> FindByRequestId(
      const std::string& tenant, const std::string& request_id) const override {
    return real_->FindByRequestId(tenant, request_id);
  }
  absl::StatusOr<std::vector<ExportJob>> ReadEvents(const std::string& id, int64_t after,
                                                    int limit) const override {
    return real_->ReadEvents(id, after, limit);
  }
  absl::StatusOr<std::vector<IndexEntry>> ScanQueue(absl::Time t, int limit) const override {
    return real_->ScanQueue(t, limit);
  }
  absl::StatusOr<std::vector<IndexEntry>> ScanLeases(absl::Time t, int limit) const override {
    return real_->ScanLeases(t, limit);
  }
  absl::StatusOr<std::string> LastJobId() const override { return real_->LastJobId(); }

  // Commits wait from now until ReleaseCommits.
  void HoldCommits() {
    absl::MutexLock lock(&mu_);
    held_ = true;
    entered_ = false;
  }
  void AwaitFirstHeldCommit() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&entered_));
  }
  void ReleaseCommits() {
    absl::MutexLock lock(&mu_);
    held_ = false;
  }
  // Lists wait from now until ReleaseLists.
  void HoldLists() {
    absl::MutexLock lock(&mu_);
    lists_held_ = true;
    list_entered_ = false;
  }
  void AwaitFirstHeldList() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&list_entered_));
  }
  void ReleaseLists() {
    absl::MutexLock lock(&mu_);
    lists_held_ = false;
  }
  void FailCommits(bool fail) {
    absl::MutexLock lock(&mu_);
    fail_ = fail;
  }
  int commits() {
    absl::MutexLock lock(&mu_);
    return commits_;
  }

 private:
  JobStore* const real_;
  mutable absl::Mutex mu_;
  int commits_ ABSL_GUARDED_BY(mu_) = 0;
  bool fail_ ABSL_GUARDED_BY(mu_) = false;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  bool entered_ ABSL_GUARDED_BY(mu_) = false;
  bool lists_held_ ABSL_GUARDED_BY(mu_) = false;
  mutable bool list_entered_ ABSL_GUARDED_BY(mu_) = false;
};

class JobManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RocksDbJobStore::Options options;
    options.path = dir_.path() + "/jobs";
    auto store = RocksDbJobStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    real_ = *std::move(store);
    store_ = std::make_unique<ControlledStore>(real_.get());
    auto manager = JobManager::Start(
        store_.get(), &clock_, &readers_, JobManager::Options{}, [this](const JobChange& change) {
          absl::MutexLock lock(&mu_);
          const JobRecord& r = change.after ? *change.after : *change.before;
          published_.push_back(
              absl::StrCat(r.job().id(), "@", r.job().revision(), change.after ? "" : ":deleted"));
        });
    ASSERT_TRUE(manager.ok()) << manager.status();
    jobs_ = *std::move(manager);
  }

  absl::StatusOr<ExportJob> Create(const std::string& request_id = "") {
    exportjobs::v1::CreateExportJobRequest request;
    request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
    request.add_fields("name");
    request.set_request_id(request_id);
    auto normalized = ValidateAndNormalizeCreate(request, CreateLimits{});
    if (!normalized.ok()) return normalized.status();
    return Wait([&](auto done) { jobs_->Create(*normalized, "", std::move(done)); });
  }

  absl::StatusOr<ExportJob> Cancel(const std::string& id) {
    return Wait([&](auto done) { jobs_->Cancel(id, "", std::move(done)); });
  }

  absl::StatusOr<ExportJob> StartProcessing(const std::string& id) {
    return Wait([&](auto done) {
      jobs_->Update(
          id,
          [](JobRecord& record) {
            record.mutable_job()->set_status(exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING);
            return absl::OkStatus();
          },
          std::move(done));
    });
  }

  template <typename Start>
  static absl::StatusOr<ExportJob> Wait(Start start) {
    absl::Notification done;
    absl::StatusOr<ExportJob> result;
    start([&](absl::StatusOr<ExportJob> job) {
      result = std::move(job);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }

  std::vector<std::string> Published() {
    absl::MutexLock lock(&mu_);
    return published_;
  }

  TempDir dir_;
  FakeClock clock_;
  Executor readers_{"test-read", 2};
  std::unique_ptr<JobStore> real_;
  std::unique_ptr<ControlledStore> store_;
  std::unique_ptr<JobManager> jobs_;
  absl::Mutex mu_;
  std::vector<std::string> published_ ABSL_GUARDED_BY(mu_);
};

// The names of this process's threads, from /proc.
std::vector<std::string> ThreadNames() {
  std::vector<std::string> names;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) names.push_back(name);
  }
  return names;
}

TEST_F(JobManagerTest, TheCommitterThreadIsNamed) {
  // jobs_ is running: its committer is one of this process's threads, by name.
  EXPECT_THAT(ThreadNames(), ::testing::Contains("job-committer"));
  jobs_.reset();
  EXPECT_THAT(ThreadNames(), ::testing::Not(::testing::Contains("job-committer")));
}

TEST_F(JobManagerTest, CancelOfProcessingJobRequestsCancellation) {
  ASSERT_OK_AND_ASSIGN(ExportJob job, Create());
  ASSERT_OK_AND_ASSIGN(ExportJob processing, StartProcessing(job.id()));

  ASSERT_OK_AND_ASSIGN(ExportJob requested, Cancel(job.id()));

  EXPECT_EQ(requested.status(), exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING);
  EXPECT_TRUE(requested.cancel_requested());
  EXPECT_EQ(requested.revision(), processing.revision() + 1);
  ASSERT_OK_AND_ASSIGN(JobRecord stored, real_->Get(job.id()));
  EXPECT_TRUE(stored.job().cancel_requested());
}

TEST_F(JobManagerTest, RepeatedCancelOfProcessingJobChangesNothing) {
  ASSERT_OK_AND_ASSIGN(ExportJob job, Create());
  ASSERT_OK(StartProcessing(job.id()));
  ASSERT_OK_AND_ASSIGN(ExportJob first, Cancel(job.id()));
  const size_t published = Published().size();

  ASSERT_OK_AND_ASSIGN(ExportJob second, Cancel(job.id()));

  EXPECT_EQ(second.revision(), first.revision());
  EXPECT_EQ(Published().size(), published);
}

TEST_F(JobManagerTest, DeleteOfProcessingJobIsFailedPrecondition) {
  ASSERT_OK_AND_ASSIGN(ExportJob job, Create());
  ASSERT_OK(StartProcessing(job.id()));
  absl::Notification done;
  absl::Status status;
  jobs_->Delete(job.id(), "", [&](absl::Status s) {
    status = s;
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is processing")));
}

TEST_F(JobManagerTest, AnotherTenantsJobIsNotFound) {
  ASSERT_OK_AND_ASSIGN(ExportJob job, Create());
  absl::StatusOr<ExportJob> got =
      Wait([&](auto done) { jobs_->Get(job.id(), "tenant-b", std::move(done)); });
  absl::StatusOr<ExportJob> cancelled =
      Wait([&](auto done) { jobs_->Cancel(job.id(), "tenant-b", std::move(done)); });
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(cancelled, StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(JobManagerTest, FailedMutationLeavesTheJobUnchanged) {
  ASSERT_OK_AND_ASSIGN(ExportJob job, Create());
  absl::StatusOr<ExportJob> result = Wait([&](auto done) {
    jobs_->Update(
        job.id(),
        [](JobRecord& record) {
          record.mutable_job()->set_error_message("half-done");
          return absl::AbortedError("lease lost");
        },
        std::move(done));
  });
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kAborted, HasSubstr("lease lost")));
  ASSERT_OK_AND_ASSIGN(JobRecord stored, real_->Get(job.id()));
  EXPECT_EQ(stored.job().revision(), 1);
  EXPECT_EQ(stored.job().error_message(), "");
}

TEST_F(JobManagerTest, ConcurrentRequestsShareOneSyncedWrite) {
  ASSERT_OK(Create());  // Warm: one commit.
  store_->HoldCommits();
  std::vector<absl::StatusOr<ExportJob>> results(100);
  absl::Mutex mu;
  int answered = 0;
  bool all = false;
  exportjobs::v1::CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  auto normalized = ValidateAndNormalizeCreate(request, CreateLimits{});
  ASSERT_OK(normalized);
  for (int i = 0; i < 100; ++i) {
    jobs_->Create(*normalized, "", [&, i](absl::StatusOr<ExportJob> job) {
      results[i] = std::move(job);
      absl::MutexLock lock(&mu);
      all = ++answered == 100;
    });
    if (i == 0) store_->AwaitFirstHeldCommit();  // The committer holds request 0 alone.
  }
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(answered, 0) << "nothing is answered before its write is durable";
  }
  store_->ReleaseCommits();
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&all));
  }

  for (const auto& r : results) EXPECT_OK(r);
  EXPECT_EQ(store_->commits(), 3);  // The warm-up, request 0, then requests 1-99 together.
}

TEST_F(JobManagerTest, StoreFailureAnswersUnavailableAndPublishesNothing) {
  ASSERT_OK_AND_ASSIGN(ExportJob kept, Create());
  store_->FailCommits(true);

  absl::StatusOr<ExportJob> failed = Create("r-1");
  absl::StatusOr<ExportJob> cancel = Cancel(kept.id());

  EXPECT_THAT(failed, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("disk on fire")));
  EXPECT_THAT(cancel, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(Published().size(), 1u);
  store_->FailCommits(false);
  ASSERT_OK_AND_ASSIGN(ExportJob retried, Create("r-1"));
  EXPECT_EQ(retried.revision(), 1);
  ASSERT_OK_AND_ASSIGN(JobRecord stored, real_->Get(kept.id()));
  EXPECT_EQ(stored.job().status(), exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
}

TEST_F(JobManagerTest, ChangesArePublishedInCommitOrder) {
  ASSERT_OK_AND_ASSIGN(ExportJob a, Create());
  ASSERT_OK_AND_ASSIGN(ExportJob b, Create());
  ASSERT_OK(Cancel(b.id()));
  ASSERT_OK(Cancel(a.id()));
  absl::Notification deleted;
  jobs_->Delete(a.id(), "", [&](absl::Status) { deleted.Notify(); });
  deleted.WaitForNotification();

  EXPECT_THAT(Published(), ::testing::ElementsAre(a.id() + "@1", b.id() + "@1", b.id() + "@2",
                                                  a.id() + "@2", a.id() + "@2:deleted"));
}

TEST_F(JobManagerTest, IdsKeepIncreasingAcrossRestartsWhenTheClockStepsBack) {
  ASSERT_OK_AND_ASSIGN(ExportJob before, Create());
  jobs_.reset();
  clock_.Advance(absl::Hours(-1));
  auto manager = JobManager::Start(store_.get(), &clock_, &readers_, JobManager::Options{},
                                   [](const JobChange&) {});
  ASSERT_OK(manager);
  jobs_ = *std::move(manager);

  ASSERT_OK_AND_ASSIGN(ExportJob after, Create());

  EXPECT_GT(after.id(), before.id());
}

// --- Counts by status, and the commit report ---

// Every job of the store, counted by status with a full scan (the truth to compare with).
std::array<int64_t, exportjobs::v1::ExportJobStatus_ARRAYSIZE> CountByScan(const JobStore& store) {
  std::array<int64_t, exportjobs::v1::ExportJobStatus_ARRAYSIZE> counts{};
  ListQuery query;
  query.limit = 1000;
  while (true) {
    absl::StatusOr<ListResult> page = store.List(query);
    EXPECT_OK(page);
    if (!page.ok()) return counts;
    for (const JobRecord& record : page->jobs) ++counts[record.job().status()];
    if (!page->more) return counts;
    query.before_id = page->jobs.back().job().id();
  }
}

TEST_F(JobManagerTest, CountsFollowEveryCommittedChange) {
  ASSERT_TRUE(jobs_->AwaitCounted(absl::Now() + absl::Seconds(10)));  // An empty store.
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK_AND_ASSIGN(ExportJob job, Create());
    ids.push_back(job.id());
  }
  ASSERT_OK(Cancel(ids[0]));
  ASSERT_OK(StartProcessing(ids[1]));
  absl::Notification deleted;
  jobs_->Delete(ids[0], "", [&](absl::Status) { deleted.Notify(); });
  deleted.WaitForNotification();

  JobManager::Counts counts = jobs_->counts();
  ASSERT_TRUE(counts.by_status.has_value());
  EXPECT_EQ(*counts.by_status, CountByScan(*real_));
  EXPECT_EQ((*counts.by_status)[exportjobs::v1::EXPORT_JOB_STATUS_PENDING], 3);
  EXPECT_EQ((*counts.by_status)[exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING], 1);
  EXPECT_EQ(counts.queued[exportjobs::v1::ENTITY_TYPE_ACCOUNTS], 3);
  EXPECT_EQ(counts.queued[exportjobs::v1::ENTITY_TYPE_PEOPLE], 0);
}

TEST_F(JobManagerTest, ACountAtStartInterleavedWithChangesEndsExact) {
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) {
    ASSERT_OK_AND_ASSIGN(ExportJob job, Create());
    ids.push_back(job.id());
    if (i % 3 == 0) ASSERT_OK(Cancel(job.id()));
  }
  jobs_.reset();
  // One record per step: every change below lands between steps of the count, on jobs already
  // counted and on jobs not yet counted.
  JobManager::Options options;
  options.count_page_size = 1;
  store_->HoldLists();  // The count's first page waits, so the count is seen under way.
  auto manager =
      JobManager::Start(store_.get(), &clock_, &readers_, options, [](const JobChange&) {});
  ASSERT_OK(manager);
  jobs_ = *std::move(manager);
  store_->AwaitFirstHeldList();
  EXPECT_FALSE(jobs_->counts().by_status.has_value());
  store_->ReleaseLists();

  std::vector<absl::Notification> done(ids.size() + 10);
  size_t next = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i % 3 == 0) {
      jobs_->Delete(ids[i], "", [&, n = next++](absl::Status) { done[n].Notify(); });
    } else {
      jobs_->Cancel(ids[i], "", [&, n = next++](absl::StatusOr<ExportJob>) { done[n].Notify(); });
    }
  }
  for (int i = 0; i < 10; ++i) {
    auto normalized = ValidateAndNormalizeCreate(
        [] {
          exportjobs::v1::CreateExportJobRequest request;
          request.set_entity_type(exportjobs::v1::ENTITY_TYPE_PEOPLE);
          return request;
        }(),
        CreateLimits{});
    ASSERT_OK(normalized);
    jobs_->Create(*normalized, "",
                  [&, n = next++](absl::StatusOr<ExportJob>) { done[n].Notify(); });
  }
  for (size_t n = 0; n < next; ++n) done[n].WaitForNotification();
  ASSERT_TRUE(jobs_->AwaitCounted(absl::Now() + absl::Seconds(10)));

  JobManager::Counts counts = jobs_->counts();
  ASSERT_TRUE(counts.by_status.has_value());
  EXPECT_EQ(*counts.by_status, CountByScan(*real_));
  EXPECT_EQ((*counts.by_status)[exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED], 26);
  EXPECT_EQ((*counts.by_status)[exportjobs::v1::EXPORT_JOB_STATUS_PENDING], 10);
  EXPECT_EQ(counts.queued[exportjobs::v1::ENTITY_TYPE_PEOPLE], 10);
  EXPECT_EQ(counts.queued[exportjobs::v1::ENTITY_TYPE_ACCOUNTS], 0);
}

TEST_F(JobManagerTest, AFailedWriteIsNotReportedAndChangesNoCount) {
  jobs_.reset();
  std::vector<std::string> reported;
  absl::Mutex reported_mu;
  JobManager::Options options;
  options.on_commit = [&](const CommitReport& report) {
    absl::MutexLock lock(&reported_mu);
    for (size_t i = 0; i < report.changes.size(); ++i) {
      const JobChange& change = report.changes[i];
      reported.push_back(absl::StrCat(static_cast<int>(report.causes[i]), ":",
                                      change.before ? "b" : "", change.after ? "a" : ""));
    }
  };
  auto manager =
      JobManager::Start(store_.get(), &clock_, &readers_, options, [](const JobChange&) {});
  ASSERT_OK(manager);
  jobs_ = *std::move(manager);
  ASSERT_OK_AND_ASSIGN(ExportJob job, Create());
  store_->FailCommits(true);
  EXPECT_THAT(Cancel(job.id()), StatusIs(absl::StatusCode::kUnavailable));
  store_->FailCommits(false);

  JobManager::Counts counts = jobs_->counts();
  ASSERT_TRUE(counts.by_status.has_value());
  EXPECT_EQ((*counts.by_status)[exportjobs::v1::EXPORT_JOB_STATUS_PENDING], 1);
  EXPECT_EQ((*counts.by_status)[exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED], 0);
  absl::MutexLock lock(&reported_mu);
  EXPECT_THAT(reported,
              ::testing::ElementsAre(absl::StrCat(static_cast<int>(ChangeCause::kCreate), ":a")));
}

TEST_F(JobManagerTest, TheStoredFingerprintIsTheSha256OfTheRequestWithoutItsRequestId) {
  // Records stored by any earlier server must still match their retries: the digest's form is
  // part of the stored data.
  ASSERT_OK_AND_ASSIGN(ExportJob job, Create("r-fingerprint"));
  ASSERT_OK_AND_ASSIGN(JobRecord stored, real_->Get(job.id()));
  exportjobs::v1::CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  request.add_fields("name");
  ASSERT_OK_AND_ASSIGN(exportjobs::v1::CreateExportJobRequest normalized,
                       ValidateAndNormalizeCreate(request, CreateLimits{}));
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    normalized.SerializeToCodedStream(&coded);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  EXPECT_EQ(stored.request_fingerprint(),
            std::string(reinterpret_cast<const char*>(digest), sizeof(digest)));
  EXPECT_EQ(CreateFingerprint(normalized), stored.request_fingerprint());
}

TEST_F(JobManagerTest, TheAnswerThreadReportsEachWrittenGroupBeforeItsCallersHear) {
  jobs_.reset();
  absl::Mutex reported_mu;
  std::vector<std::string> reported;
  std::thread::id committer;
  std::thread::id answering;
  JobManager::Options options;
  options.on_commit = [&](const CommitReport&) {
    absl::MutexLock lock(&reported_mu);
    committer = std::this_thread::get_id();
  };
  options.on_commit_answering = [&](const CommitReport& report) {
    absl::MutexLock lock(&reported_mu);
    answering = std::this_thread::get_id();
    for (size_t i = 0; i < report.changes.size(); ++i) {
      const JobRecord& r = *report.changes[i].after;
      reported.push_back(absl::StrCat(r.job().id(), "@", r.job().revision(), ":",
                                      static_cast<int>(report.causes[i]), ":", report.requests));
    }
  };
  auto manager =
      JobManager::Start(store_.get(), &clock_, &readers_, options, [](const JobChange&) {});
  ASSERT_OK(manager);
  jobs_ = *std::move(manager);

  std::vector<std::string> reported_when_answered;
  exportjobs::v1::CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  auto normalized = ValidateAndNormalizeCreate(request, CreateLimits{});
  ASSERT_OK(normalized);
  absl::StatusOr<ExportJob> job = Wait([&](auto done) {
    jobs_->Create(*normalized, "",
                  [&, done = std::move(done)](absl::StatusOr<ExportJob> job) mutable {
                    {
                      absl::MutexLock lock(&reported_mu);
                      reported_when_answered = reported;
                    }
                    done(std::move(job));
                  });
  });
  ASSERT_OK(job);
  ASSERT_OK(Cancel(job->id()));
  store_->FailCommits(true);
  EXPECT_THAT(Create(), StatusIs(absl::StatusCode::kUnavailable));
  store_->FailCommits(false);
  jobs_->Shutdown();  // Every answer (and report) is through.

  const std::string create = absl::StrCat(static_cast<int>(ChangeCause::kCreate));
  const std::string cancel = absl::StrCat(static_cast<int>(ChangeCause::kCancel));
  absl::MutexLock lock(&reported_mu);
  EXPECT_THAT(reported_when_answered, ::testing::ElementsAre(job->id() + "@1:" + create + ":1"));
  EXPECT_THAT(reported, ::testing::ElementsAre(job->id() + "@1:" + create + ":1",
                                               job->id() + "@2:" + cancel + ":1"));
  EXPECT_NE(answering, committer) << "reported on the committer";
}

}  // namespace
}  // namespace exportd::testing
