#include "tests/storage/job_store_contract_test.h"

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace exportd::testing {

using ::testing::HasSubstr;

namespace {

using exportjobs::v1::ENTITY_TYPE_ACCOUNTS;
using exportjobs::v1::ENTITY_TYPE_PEOPLE;
using exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED;
using exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED;
using exportjobs::v1::EXPORT_JOB_STATUS_PENDING;
using exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING;

google::protobuf::Timestamp ToProto(absl::Time time) {
  google::protobuf::Timestamp timestamp;
  const int64_t seconds = absl::ToUnixSeconds(time);
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(
      static_cast<int32_t>((time - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
  return timestamp;
}

std::string StatusName(ExportJobStatus status) {
  return absl::AsciiStrToLower(
      absl::StripPrefix(exportjobs::v1::ExportJobStatus_Name(status), "EXPORT_JOB_STATUS_"));
}

std::string Error(const absl::Status& status) { return absl::StrCat("error: ", status.ToString()); }

MATCHER_P(EqualsProto, expected, "equals " + expected.ShortDebugString()) {
  if (google::protobuf::util::MessageDifferencer::Equals(arg, expected)) return true;
  *result_listener << "which is " << arg.ShortDebugString();
  return false;
}

std::vector<JobChange> CreateChanges(const std::vector<JobRecord>& records) {
  std::vector<JobChange> changes;
  for (const JobRecord& record : records) changes.push_back(JobChange{std::nullopt, record});
  return changes;
}

}  // namespace

// --- Fixture ---

const absl::Time JobStoreContractTest::kT0 = absl::FromUnixSeconds(1'700'000'000);

void JobStoreContractTest::SetUp() {
  ASSERT_FALSE(dir().empty());
  ASSERT_OK_AND_ASSIGN(store_, GetParam().open(dir()));
}

void JobStoreContractTest::TearDown() { store_.reset(); }

void JobStoreContractTest::Reopen() {
  store_.reset();
  ASSERT_OK_AND_ASSIGN(store_, GetParam().open(dir()));
}

JobRecord JobStoreContractTest::NewJob(const std::string& name, EntityType entity_type) {
  clock_.Advance(absl::Seconds(1));
  JobRecord record;
  ExportJob& job = *record.mutable_job();
  job.set_id(ids_.Next());
  job.set_entity_type(entity_type);
  job.set_status(EXPORT_JOB_STATUS_PENDING);
  job.add_fields("id");
  job.add_fields("name");
  job.set_revision(1);
  *job.mutable_created_at() = ToProto(clock_.Now());
  *job.mutable_updated_at() = ToProto(clock_.Now());
  names_[job.id()] = name;
  return record;
}

JobRecord JobStoreContractTest::Next(const JobRecord& record) const {
  JobRecord next = record;
  next.mutable_job()->set_revision(record.job().revision() + 1);
  *next.mutable_job()->mutable_updated_at() = ToProto(clock_.Now());
  return next;
}

JobRecord JobStoreContractTest::Claimed(const JobRecord& record, absl::Time expires_at) const {
  JobRecord next = Next(record);
  next.mutable_job()->set_status(EXPORT_JOB_STATUS_PROCESSING);
  next.mutable_job()->set_attempt(record.job().attempt() + 1);
  next.mutable_lease()->set_token("token");
  next.mutable_lease()->set_epoch(record.lease().epoch() + 1);
  *next.mutable_lease()->mutable_expires_at() = ToProto(expires_at);
  next.mutable_lease()->set_worker_id("worker-1");
  return next;
}

JobRecord JobStoreContractTest::Requeued(const JobRecord& record, absl::Time ready_at) const {
  JobRecord next = Next(record);
  next.mutable_job()->set_status(EXPORT_JOB_STATUS_PENDING);
  next.clear_lease();
  *next.mutable_ready_at() = ToProto(ready_at);
  return next;
}

JobRecord JobStoreContractTest::WithStatus(const JobRecord& record, ExportJobStatus status) const {
  JobRecord next = Next(record);
  next.mutable_job()->set_status(status);
  next.clear_lease();
  return next;
}

absl::Status JobStoreContractTest::Create(const JobRecord& after) {
  return store_->Commit(std::vector<JobChange>{{std::nullopt, after}});
}

absl::Status JobStoreContractTest::Update(const JobRecord& before, const JobRecord& after) {
  return store_->Commit(std::vector<JobChange>{{before, after}});
}

absl::Status JobStoreContractTest::Delete(const JobRecord& before) {
  return store_->Commit(std::vector<JobChange>{{before, std::nullopt}});
}

std::string JobStoreContractTest::Queue(absl::Time by, int limit) const {
  absl::StatusOr<std::vector<IndexEntry>> entries = store_->ScanQueue(by, limit);
  if (!entries.ok()) return Error(entries.status());
  return absl::StrJoin(*entries, " ", [this](std::string* out, const IndexEntry& entry) {
    absl::StrAppend(out, Name(entry.id), "@", Offset(entry.time));
  });
}

std::string JobStoreContractTest::Leases(absl::Time by, int limit) const {
  absl::StatusOr<std::vector<IndexEntry>> entries = store_->ScanLeases(by, limit);
  if (!entries.ok()) return Error(entries.status());
  return absl::StrJoin(*entries, " ", [this](std::string* out, const IndexEntry& entry) {
    absl::StrAppend(out, Name(entry.id), "@", Offset(entry.time));
  });
}

std::string JobStoreContractTest::List(const ListQuery& query) const {
  absl::StatusOr<ListResult> result = store_->List(query);
  if (!result.ok()) return Error(result.status());
  std::string out =
      absl::StrJoin(result->jobs, " ", [this](std::string* out, const JobRecord& record) {
        absl::StrAppend(out, Name(record.job().id()));
      });
  if (result->more) absl::StrAppend(&out, " +more");
  return out;
}

std::string JobStoreContractTest::AllJobs() const {
  ListQuery query;
  query.limit = 100000;
  return List(query);
}

std::string JobStoreContractTest::Events(const JobRecord& record, int64_t after_revision,
                                         int limit) const {
  absl::StatusOr<std::vector<ExportJob>> events =
      store_->ReadEvents(record.job().id(), after_revision, limit);
  if (!events.ok()) return Error(events.status());
  return absl::StrJoin(*events, " ", [this](std::string* out, const ExportJob& job) {
    absl::StrAppend(out, Name(job.id()), "/", job.revision(), ":", StatusName(job.status()));
  });
}

std::string JobStoreContractTest::Find(const std::string& tenant,
                                       const std::string& request_id) const {
  absl::StatusOr<std::optional<std::string>> id = store_->FindByRequestId(tenant, request_id);
  if (!id.ok()) return Error(id.status());
  return id->has_value() ? Name(**id) : "none";
}

std::string JobStoreContractTest::Last() const {
  absl::StatusOr<std::string> id = store_->LastJobId();
  if (!id.ok()) return Error(id.status());
  return id->empty() ? "" : Name(*id);
}

std::string JobStoreContractTest::Name(const std::string& id) const {
  auto it = names_.find(id);
  return it == names_.end() ? id : it->second;
}

std::string JobStoreContractTest::Offset(absl::Time time) {
  return absl::FormatDuration(time - kT0);
}

namespace {

// --- Get ---

TEST_P(JobStoreContractTest, CreateThenGetReturnsIdenticalRecord) {
  JobRecord a = NewJob("a");
  a.set_tenant("tenant-1");
  a.set_request_fingerprint(std::string("\x00\xff\x10", 3));
  a.mutable_job()->set_request_id("req-1");
  a.mutable_job()->set_format(exportjobs::v1::EXPORT_FORMAT_JSONL);
  a.mutable_job()->set_compression(exportjobs::v1::COMPRESSION_GZIP);
  a.mutable_job()->set_part_size_bytes(1 << 20);
  (*a.mutable_job()->mutable_filters()->mutable_fields())["country"].set_string_value("NL");
  *a.mutable_ready_at() = ToProto(kT0 + absl::Seconds(5));
  ASSERT_OK(Create(a));

  EXPECT_THAT(store().Get(a.job().id()), IsOkAndHolds(EqualsProto(a)));
}

TEST_P(JobStoreContractTest, GetUnknownIsNotFound) {
  JobRecord a = NewJob("a");

  EXPECT_THAT(store().Get(a.job().id()), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(JobStoreContractTest, GetEmptyIdIsNotFound) {
  EXPECT_THAT(store().Get(""), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(JobStoreContractTest, UpdateReplacesRecord) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(Update(a, a2));

  EXPECT_THAT(store().Get(a.job().id()), IsOkAndHolds(EqualsProto(a2)));
}

TEST_P(JobStoreContractTest, EmptyCommitIsOk) { EXPECT_OK(store().Commit({})); }

// --- Events ---

TEST_P(JobStoreContractTest, CreateWritesFirstEvent) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));

  EXPECT_EQ(Events(a), "a/1:pending");
}

TEST_P(JobStoreContractTest, UpdateAppendsEvent) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  ASSERT_OK(Update(a, Claimed(a, kT0 + absl::Seconds(90))));

  EXPECT_EQ(Events(a), "a/1:pending a/2:processing");
}

TEST_P(JobStoreContractTest, EventIsThePublicJob) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(Update(a, a2));

  EXPECT_THAT(store().ReadEvents(a.job().id(), 1, 10),
              IsOkAndHolds(::testing::ElementsAre(EqualsProto(a2.job()))));
}

TEST_P(JobStoreContractTest, ReadEventsAfterRevision) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(Update(a, a2));
  ASSERT_OK(Update(a2, Requeued(a2, kT0 + absl::Seconds(120))));

  EXPECT_EQ(Events(a, 1), "a/2:processing a/3:pending");
}

TEST_P(JobStoreContractTest, ReadEventsLimit) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(Update(a, a2));
  ASSERT_OK(Update(a2, Requeued(a2, kT0 + absl::Seconds(120))));

  EXPECT_EQ(Events(a, 0, 2), "a/1:pending a/2:processing");
}

TEST_P(JobStoreContractTest, ReadEventsAfterLastRevisionIsEmpty) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  ASSERT_OK(Update(a, Claimed(a, kT0 + absl::Seconds(90))));

  EXPECT_EQ(Events(a, 2), "");
}

TEST_P(JobStoreContractTest, ReadEventsOfUnknownJobIsEmpty) {
  JobRecord a = NewJob("a");

  EXPECT_EQ(Events(a), "");
}

TEST_P(JobStoreContractTest, ReadEventsHasOnlyThatJobsEvents) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  JobRecord c = NewJob("c");
  ASSERT_OK(Create(a));
  ASSERT_OK(Create(b));
  ASSERT_OK(Create(c));
  ASSERT_OK(Update(b, Claimed(b, kT0 + absl::Seconds(90))));

  EXPECT_EQ(Events(b), "b/1:pending b/2:processing");
}

// --- Delete ---

TEST_P(JobStoreContractTest, DeleteRemovesJob) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  ASSERT_OK(Delete(a));

  EXPECT_THAT(store().Get(a.job().id()), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(JobStoreContractTest, DeleteRemovesEvents) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(Update(a, a2));
  ASSERT_OK(Delete(a2));

  EXPECT_EQ(Events(a), "");
}

TEST_P(JobStoreContractTest, DeleteKeepsOtherJobsEvents) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  JobRecord c = NewJob("c");
  ASSERT_OK(Create(a));
  ASSERT_OK(Create(b));
  ASSERT_OK(Create(c));
  ASSERT_OK(Delete(b));

  EXPECT_EQ(Events(a) + " " + Events(c), "a/1:pending c/1:pending");
}

TEST_P(JobStoreContractTest, DeleteRemovesIdempotencyKey) {
  JobRecord a = NewJob("a");
  a.mutable_job()->set_request_id("req-1");
  ASSERT_OK(Create(a));
  ASSERT_OK(Delete(a));

  EXPECT_EQ(Find("", "req-1"), "none");
}

TEST_P(JobStoreContractTest, DeleteRemovesQueueEntry) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  ASSERT_OK(Delete(a));

  EXPECT_EQ(Queue(), "");
}

TEST_P(JobStoreContractTest, DeleteRemovesLeaseEntry) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(Update(a, a2));
  ASSERT_OK(Delete(a2));

  EXPECT_EQ(Leases(), "");
}

TEST_P(JobStoreContractTest, DeleteKeepsOtherJobs) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  ASSERT_OK(Create(a));
  ASSERT_OK(Create(b));
  ASSERT_OK(Delete(a));

  EXPECT_EQ(AllJobs(), "b");
}

// --- Idempotency ---

TEST_P(JobStoreContractTest, FindByRequestIdBeforeCreateIsNone) {
  EXPECT_EQ(Find("", "req-1"), "none");
}

TEST_P(JobStoreContractTest, FindByRequestIdAfterCreate) {
  JobRecord a = NewJob("a");
  a.mutable_job()->set_request_id("req-1");
  ASSERT_OK(Create(a));

  EXPECT_EQ(Find("", "req-1"), "a");
}

TEST_P(JobStoreContractTest, FindByRequestIdIsPerTenant) {
  JobRecord a = NewJob("a");
  a.set_tenant("t1");
  a.mutable_job()->set_request_id("req-1");
  JobRecord b = NewJob("b");
  b.set_tenant("t2");
  b.mutable_job()->set_request_id("req-1");
  ASSERT_OK(Create(a));
  ASSERT_OK(Create(b));

  EXPECT_EQ(Find("t1", "req-1") + " " + Find("t2", "req-1"), "a b");
}

TEST_P(JobStoreContractTest, FindByRequestIdOfOtherTenantIsNone) {
  JobRecord a = NewJob("a");
  a.set_tenant("t1");
  a.mutable_job()->set_request_id("req-1");
  ASSERT_OK(Create(a));

  EXPECT_EQ(Find("t2", "req-1"), "none");
}

TEST_P(JobStoreContractTest, FindByRequestIdDoesNotConfuseTenantAndRequestId) {
  JobRecord a = NewJob("a");
  a.set_tenant("t");
  a.mutable_job()->set_request_id("1req");
  ASSERT_OK(Create(a));

  EXPECT_EQ(Find("t1", "req"), "none");
}

TEST_P(JobStoreContractTest, JobWithoutRequestIdIsNotFoundByEmptyRequestId) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));

  EXPECT_EQ(Find("", ""), "none");
}

TEST_P(JobStoreContractTest, FindByRequestIdAfterUpdate) {
  JobRecord a = NewJob("a");
  a.mutable_job()->set_request_id("req-1");
  ASSERT_OK(Create(a));
  ASSERT_OK(Update(a, Claimed(a, kT0 + absl::Seconds(90))));

  EXPECT_EQ(Find("", "req-1"), "a");
}

// --- Claim queue and lease index ---

TEST_P(JobStoreContractTest, CreatedPendingJobIsQueuedAtCreatedAt) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));

  EXPECT_EQ(Queue(), "a@1s");
}

TEST_P(JobStoreContractTest, QueueEntriesCarryTheEntityType) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  b.mutable_job()->set_entity_type(exportjobs::v1::ENTITY_TYPE_CAMPAIGNS);
  ASSERT_OK(Create(a));
  ASSERT_OK(Create(b));

  ASSERT_OK_AND_ASSIGN(std::vector<IndexEntry> queue,
                       store().ScanQueue(absl::InfiniteFuture(), 10));

  ASSERT_EQ(queue.size(), 2u);
  EXPECT_EQ(queue[0].entity_type, a.job().entity_type());
  EXPECT_EQ(queue[1].entity_type, exportjobs::v1::ENTITY_TYPE_CAMPAIGNS);
}

TEST_P(JobStoreContractTest, PendingJobIsQueuedAtReadyAt) {
  JobRecord a = NewJob("a");
  *a.mutable_ready_at() = ToProto(kT0 + absl::Seconds(30));
  ASSERT_OK(Create(a));

  EXPECT_EQ(Queue(), "a@30s");
}

TEST_P(JobStoreContractTest, CreatedPendingJobHasNoLease) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));

  EXPECT_EQ(Leases(), "");
}

TEST_P(JobStoreContractTest, CreatedNonPendingJobIsNotQueued) {
  JobRecord a = NewJob("a");
  a.mutable_job()->set_status(EXPORT_JOB_STATUS_CANCELLED);
  ASSERT_OK(Create(a));

  EXPECT_EQ(Queue(), "");
}

TEST_P(JobStoreContractTest, ClaimedJobLeavesQueue) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  ASSERT_OK(Update(a, Claimed(a, kT0 + absl::Seconds(90))));

  EXPECT_EQ(Queue(), "");
}

TEST_P(JobStoreContractTest, ClaimedJobIsInLeasesAtExpiry) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  ASSERT_OK(Update(a, Claimed(a, kT0 + absl::Seconds(90))));

  EXPECT_EQ(Leases(), "a@1m30s");
}

TEST_P(JobStoreContractTest, ProcessingJobWithoutLeaseIsNotInLeases) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  ASSERT_OK(Update(a, WithStatus(a, EXPORT_JOB_STATUS_PROCESSING)));

  EXPECT_EQ(Leases(), "");
}

TEST_P(JobStoreContractTest, ExtendedLeaseMovesLeaseEntry) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(Update(a, a2));
  JobRecord a3 = Next(a2);
  *a3.mutable_lease()->mutable_expires_at() = ToProto(kT0 + absl::Seconds(150));
  ASSERT_OK(Update(a2, a3));

  EXPECT_EQ(Leases(), "a@2m30s");
}

TEST_P(JobStoreContractTest, RequeuedJobReturnsToQueueAtReadyAt) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(Update(a, a2));
  ASSERT_OK(Update(a2, Requeued(a2, kT0 + absl::Seconds(120))));

  EXPECT_EQ(Queue(), "a@2m");
}

TEST_P(JobStoreContractTest, RequeuedJobLeavesLeases) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(Update(a, a2));
  ASSERT_OK(Update(a2, Requeued(a2, kT0 + absl::Seconds(120))));

  EXPECT_EQ(Leases(), "");
}

TEST_P(JobStoreContractTest, CompletedJobLeavesLeases) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(Update(a, a2));
  ASSERT_OK(Update(a2, WithStatus(a2, EXPORT_JOB_STATUS_COMPLETED)));

  EXPECT_EQ(Leases(), "");
}

TEST_P(JobStoreContractTest, CancelledPendingJobLeavesQueue) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  ASSERT_OK(Update(a, WithStatus(a, EXPORT_JOB_STATUS_CANCELLED)));

  EXPECT_EQ(Queue(), "");
}

TEST_P(JobStoreContractTest, PendingUpdateKeepsOneQueueEntry) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Next(a);
  a2.mutable_job()->set_cancel_requested(false);
  ASSERT_OK(Update(a, a2));

  EXPECT_EQ(Queue(), "a@1s");
}

TEST_P(JobStoreContractTest, PendingUpdateWithNewReadyAtMovesQueueEntry) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Next(a);
  *a2.mutable_ready_at() = ToProto(kT0 + absl::Seconds(45));
  ASSERT_OK(Update(a, a2));

  EXPECT_EQ(Queue(), "a@45s");
}

TEST_P(JobStoreContractTest, ScanQueueIsEarliestFirst) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  *b.mutable_ready_at() = ToProto(kT0 + absl::Seconds(10));
  JobRecord c = NewJob("c");
  JobRecord d = NewJob("d");
  *d.mutable_ready_at() = ToProto(kT0 + absl::Seconds(3));
  for (const JobRecord* r : {&d, &c, &b, &a}) ASSERT_OK(Create(*r));

  EXPECT_EQ(Queue(), "a@1s c@3s d@3s b@10s");
}

TEST_P(JobStoreContractTest, ScanQueueIncludesReadyByAndStopsAfter) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  *b.mutable_ready_at() = ToProto(kT0 + absl::Seconds(10));
  JobRecord c = NewJob("c");
  for (const JobRecord* r : {&a, &b, &c}) ASSERT_OK(Create(*r));

  EXPECT_EQ(Queue(kT0 + absl::Seconds(3)), "a@1s c@3s");
}

TEST_P(JobStoreContractTest, ScanQueueExcludesJustAfterReadyBy) {
  JobRecord a = NewJob("a");
  *a.mutable_ready_at() = ToProto(kT0 + absl::Seconds(3) + absl::Microseconds(1));
  ASSERT_OK(Create(a));

  EXPECT_EQ(Queue(kT0 + absl::Seconds(3)), "");
}

TEST_P(JobStoreContractTest, ScanQueueBeforeEverythingIsEmpty) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));

  EXPECT_EQ(Queue(kT0), "");
}

TEST_P(JobStoreContractTest, ScanQueueLimit) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  *b.mutable_ready_at() = ToProto(kT0 + absl::Seconds(10));
  JobRecord c = NewJob("c");
  for (const JobRecord* r : {&a, &b, &c}) ASSERT_OK(Create(*r));

  EXPECT_EQ(Queue(absl::InfiniteFuture(), 2), "a@1s c@3s");
}

TEST_P(JobStoreContractTest, ScanLeasesIsEarliestFirst) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  JobRecord c = NewJob("c");
  for (const JobRecord* r : {&a, &b, &c}) ASSERT_OK(Create(*r));
  ASSERT_OK(Update(a, Claimed(a, kT0 + absl::Seconds(300))));
  ASSERT_OK(Update(b, Claimed(b, kT0 + absl::Seconds(100))));
  ASSERT_OK(Update(c, Claimed(c, kT0 + absl::Seconds(200))));

  EXPECT_EQ(Leases(), "b@1m40s c@3m20s a@5m");
}

TEST_P(JobStoreContractTest, ScanLeasesIncludesExpiredByAndStopsAfter) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  JobRecord c = NewJob("c");
  for (const JobRecord* r : {&a, &b, &c}) ASSERT_OK(Create(*r));
  ASSERT_OK(Update(a, Claimed(a, kT0 + absl::Seconds(300))));
  ASSERT_OK(Update(b, Claimed(b, kT0 + absl::Seconds(100))));
  ASSERT_OK(Update(c, Claimed(c, kT0 + absl::Seconds(200))));

  EXPECT_EQ(Leases(kT0 + absl::Seconds(200)), "b@1m40s c@3m20s");
}

TEST_P(JobStoreContractTest, ScanLeasesExcludesJustAfterExpiredBy) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  ASSERT_OK(Update(a, Claimed(a, kT0 + absl::Seconds(100) + absl::Microseconds(1))));

  EXPECT_EQ(Leases(kT0 + absl::Seconds(100)), "");
}

TEST_P(JobStoreContractTest, ScanLeasesLimit) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  JobRecord c = NewJob("c");
  for (const JobRecord* r : {&a, &b, &c}) ASSERT_OK(Create(*r));
  ASSERT_OK(Update(a, Claimed(a, kT0 + absl::Seconds(300))));
  ASSERT_OK(Update(b, Claimed(b, kT0 + absl::Seconds(100))));
  ASSERT_OK(Update(c, Claimed(c, kT0 + absl::Seconds(200))));

  EXPECT_EQ(Leases(absl::InfiniteFuture(), 1), "b@1m40s");
}

// --- List ---

ListQuery Query(int limit, std::string before_id = "") {
  ListQuery query;
  query.limit = limit;
  query.before_id = std::move(before_id);
  return query;
}

TEST_P(JobStoreContractTest, ListEmptyStore) { EXPECT_EQ(List(Query(10)), ""); }

TEST_P(JobStoreContractTest, ListIsNewestFirst) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  JobRecord c = NewJob("c");
  for (const JobRecord* r : {&b, &c, &a}) ASSERT_OK(Create(*r));

  EXPECT_EQ(List(Query(10)), "c b a");
}

TEST_P(JobStoreContractTest, ListPaginatesWithBeforeId) {
  std::vector<JobRecord> jobs;
  for (const char* name : {"a", "b", "c", "d", "e"}) jobs.push_back(NewJob(name));
  ASSERT_OK(store().Commit(CreateChanges(jobs)));

  EXPECT_EQ(List(Query(2)), "e d +more");
  EXPECT_EQ(List(Query(2, jobs[3].job().id())), "c b +more");
  EXPECT_EQ(List(Query(2, jobs[1].job().id())), "a");
}

TEST_P(JobStoreContractTest, ListHasNoMoreWhenPageEndsAtLastJob) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  ASSERT_OK(Create(a));
  ASSERT_OK(Create(b));

  EXPECT_EQ(List(Query(2)), "b a");
}

TEST_P(JobStoreContractTest, ListBeforeIdOfDeletedJob) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  JobRecord c = NewJob("c");
  for (const JobRecord* r : {&a, &b, &c}) ASSERT_OK(Create(*r));
  ASSERT_OK(Delete(b));

  EXPECT_EQ(List(Query(10, b.job().id())), "a");
}

TEST_P(JobStoreContractTest, ListFiltersByStatus) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  JobRecord c = NewJob("c");
  for (const JobRecord* r : {&a, &b, &c}) ASSERT_OK(Create(*r));
  ASSERT_OK(Update(b, WithStatus(b, EXPORT_JOB_STATUS_CANCELLED)));
  ListQuery query = Query(10);
  query.status = EXPORT_JOB_STATUS_PENDING;

  EXPECT_EQ(List(query), "c a");
}

TEST_P(JobStoreContractTest, ListFiltersByEntityType) {
  JobRecord a = NewJob("a", ENTITY_TYPE_ACCOUNTS);
  JobRecord b = NewJob("b", ENTITY_TYPE_PEOPLE);
  JobRecord c = NewJob("c", ENTITY_TYPE_ACCOUNTS);
  for (const JobRecord* r : {&a, &b, &c}) ASSERT_OK(Create(*r));
  ListQuery query = Query(10);
  query.entity_type = ENTITY_TYPE_PEOPLE;

  EXPECT_EQ(List(query), "b");
}

TEST_P(JobStoreContractTest, ListFiltersByStatusAndEntityType) {
  JobRecord a = NewJob("a", ENTITY_TYPE_PEOPLE);
  JobRecord b = NewJob("b", ENTITY_TYPE_PEOPLE);
  JobRecord c = NewJob("c", ENTITY_TYPE_ACCOUNTS);
  for (const JobRecord* r : {&a, &b, &c}) ASSERT_OK(Create(*r));
  ASSERT_OK(Update(a, WithStatus(a, EXPORT_JOB_STATUS_CANCELLED)));
  ListQuery query = Query(10);
  query.status = EXPORT_JOB_STATUS_PENDING;
  query.entity_type = ENTITY_TYPE_PEOPLE;

  EXPECT_EQ(List(query), "b");
}

TEST_P(JobStoreContractTest, ListMoreCountsOnlyMatchingJobs) {
  JobRecord a = NewJob("a", ENTITY_TYPE_ACCOUNTS);
  JobRecord b = NewJob("b", ENTITY_TYPE_PEOPLE);
  JobRecord c = NewJob("c", ENTITY_TYPE_ACCOUNTS);
  JobRecord d = NewJob("d", ENTITY_TYPE_PEOPLE);
  for (const JobRecord* r : {&a, &b, &c, &d}) ASSERT_OK(Create(*r));
  ListQuery query = Query(1);
  query.entity_type = ENTITY_TYPE_ACCOUNTS;
  ListQuery next = Query(1, c.job().id());
  next.entity_type = ENTITY_TYPE_ACCOUNTS;

  EXPECT_EQ(List(query), "c +more");
  EXPECT_EQ(List(next), "a");
}

JobRecord InTenant(JobRecord record, const std::string& tenant) {
  record.set_tenant(tenant);
  return record;
}

TEST_P(JobStoreContractTest, ListFiltersByTenant) {
  JobRecord a = InTenant(NewJob("a"), "acme");
  JobRecord b = InTenant(NewJob("b"), "globex");
  JobRecord c = InTenant(NewJob("c"), "acme");
  for (const JobRecord* r : {&a, &b, &c}) ASSERT_OK(Create(*r));
  ListQuery query = Query(10);
  EXPECT_EQ(List(query), "c b a");
  query.tenant = "acme";
  EXPECT_EQ(List(query), "c a");
  query.tenant = "globex";
  EXPECT_EQ(List(query), "b");
  query.tenant = "";
  EXPECT_EQ(List(query), "");
  ListQuery first = Query(1);
  first.tenant = "acme";
  EXPECT_EQ(List(first), "c +more");
}

TEST_P(JobStoreContractTest, ListBoundedScanStopsAndResumesWhereItStopped) {
  // g and a belong to acme; the five jobs between them to globex.
  std::vector<JobRecord> jobs;
  for (const char* name : {"a", "b", "c", "d", "e", "f", "g"}) {
    const std::string tenant = (name[0] == 'a' || name[0] == 'g') ? "acme" : "globex";
    jobs.push_back(InTenant(NewJob(name), tenant));
  }
  ASSERT_OK(store().Commit(CreateChanges(jobs)));
  ListQuery query = Query(10);
  query.tenant = "acme";
  query.max_scanned = 3;
  // Each page examines three jobs: g f e, then d c b, then a.
  std::vector<std::string> pages;
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK_AND_ASSIGN(ListResult page, store().List(query));
    std::string rendered;
    for (const JobRecord& record : page.jobs) absl::StrAppend(&rendered, Name(record.job().id()));
    if (page.more) absl::StrAppend(&rendered, " @", Name(page.resume_before_id));
    pages.push_back(rendered);
    if (!page.more) break;
    query.before_id = page.resume_before_id;
  }
  EXPECT_THAT(pages, ::testing::ElementsAre("g @e", " @b", "a"));

  // A page that fills up resumes after its last job.
  query = Query(1);
  query.max_scanned = 100;
  ASSERT_OK_AND_ASSIGN(ListResult full, store().List(query));
  EXPECT_TRUE(full.more);
  EXPECT_EQ(Name(full.resume_before_id), "g");
}

TEST_P(JobStoreContractTest, ListPageStaysStableWhenNewerJobsAreAdded) {
  std::vector<JobRecord> jobs;
  for (const char* name : {"a", "b", "c", "d"}) jobs.push_back(NewJob(name));
  ASSERT_OK(store().Commit(CreateChanges(jobs)));
  ASSERT_EQ(List(Query(2)), "d c +more");
  ASSERT_OK(Create(NewJob("e")));
  ASSERT_OK(Create(NewJob("f")));

  EXPECT_EQ(List(Query(2, jobs[2].job().id())), "b a");
}

// --- Invalid changes ---

TEST_P(JobStoreContractTest, ChangeWithNeitherBeforeNorAfterIsInvalid) {
  EXPECT_THAT(store().Commit(std::vector<JobChange>{{std::nullopt, std::nullopt}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("change 0")));
}

TEST_P(JobStoreContractTest, UpdateWithDifferentIdsIsInvalid) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  ASSERT_OK(Create(a));
  JobRecord b2 = Next(b);
  b2.mutable_job()->set_revision(2);

  EXPECT_THAT(Update(a, b2), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("change 0")));
}

TEST_P(JobStoreContractTest, UpdateWithSameRevisionIsInvalid) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Next(a);
  a2.mutable_job()->set_revision(1);

  EXPECT_THAT(Update(a, a2), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("revision")));
}

TEST_P(JobStoreContractTest, UpdateSkippingRevisionIsInvalid) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Next(a);
  a2.mutable_job()->set_revision(3);

  EXPECT_THAT(Update(a, a2), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("revision")));
}

TEST_P(JobStoreContractTest, CreateWithRevisionZeroIsInvalid) {
  JobRecord a = NewJob("a");
  a.mutable_job()->set_revision(0);

  EXPECT_THAT(Create(a), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("revision")));
}

TEST_P(JobStoreContractTest, CreateWithRevisionTwoIsInvalid) {
  JobRecord a = NewJob("a");
  a.mutable_job()->set_revision(2);

  EXPECT_THAT(Create(a), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("revision")));
}

TEST_P(JobStoreContractTest, InvalidChangeIsNamedByIndex) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  b.mutable_job()->set_revision(7);

  EXPECT_THAT(store().Commit(CreateChanges({a, b})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("change 1")));
}

TEST_P(JobStoreContractTest, InvalidChangeWritesNothing) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  b.mutable_job()->set_revision(7);
  ASSERT_THAT(store().Commit(CreateChanges({a, b})), StatusIs(absl::StatusCode::kInvalidArgument));

  EXPECT_THAT(store().Get(a.job().id()), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(Events(a), "");
  EXPECT_EQ(Queue(), "");
}

TEST_P(JobStoreContractTest, InvalidChangeLeavesEarlierChangesUnapplied) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  std::vector<JobChange> changes = {{a, a2}, {std::nullopt, std::nullopt}};
  ASSERT_THAT(store().Commit(changes), StatusIs(absl::StatusCode::kInvalidArgument));

  EXPECT_THAT(store().Get(a.job().id()), IsOkAndHolds(EqualsProto(a)));
  EXPECT_EQ(Leases(), "");
}

// --- Batches ---

TEST_P(JobStoreContractTest, ManyChangesCommitTogether) {
  std::vector<JobRecord> jobs;
  for (int i = 0; i < 200; ++i) jobs.push_back(NewJob(absl::StrCat("j", i)));
  ASSERT_OK(store().Commit(CreateChanges(jobs)));

  ASSERT_OK_AND_ASSIGN(ListResult all, store().List(Query(1000)));
  EXPECT_EQ(all.jobs.size(), 200u);
}

TEST_P(JobStoreContractTest, ManyChangesWithOneInvalidWriteNothing) {
  std::vector<JobRecord> jobs;
  for (int i = 0; i < 200; ++i) jobs.push_back(NewJob(absl::StrCat("j", i)));
  jobs.back().mutable_job()->set_revision(0);
  ASSERT_THAT(store().Commit(CreateChanges(jobs)), StatusIs(absl::StatusCode::kInvalidArgument));

  EXPECT_EQ(AllJobs(), "");
}

TEST_P(JobStoreContractTest, CreateAndUpdateInOneCommit) {
  JobRecord a = NewJob("a");
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(store().Commit(std::vector<JobChange>{{std::nullopt, a}, {a, a2}}));

  EXPECT_THAT(store().Get(a.job().id()), IsOkAndHolds(EqualsProto(a2)));
  EXPECT_EQ(Events(a), "a/1:pending a/2:processing");
  EXPECT_EQ(Queue(), "");
  EXPECT_EQ(Leases(), "a@1m30s");
}

TEST_P(JobStoreContractTest, CreateAndDeleteInOneCommitLeaveNothing) {
  JobRecord a = NewJob("a");
  a.mutable_job()->set_request_id("req-1");
  ASSERT_OK(store().Commit(std::vector<JobChange>{{std::nullopt, a}, {a, std::nullopt}}));

  EXPECT_THAT(store().Get(a.job().id()), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(Events(a), "");
  EXPECT_EQ(Queue(), "");
  EXPECT_EQ(Find("", "req-1"), "none");
}

TEST_P(JobStoreContractTest, ConcurrentCommitsAreAllApplied) {
  constexpr int kThreads = 4;
  constexpr int kJobsPerThread = 10;
  std::vector<std::vector<JobRecord>> jobs(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kJobsPerThread; ++i) jobs[t].push_back(NewJob(absl::StrCat(t, "/", i)));
  }
  std::vector<absl::Status> results(kThreads * kJobsPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kJobsPerThread; ++i) {
        results[t * kJobsPerThread + i] = Create(jobs[t][i]);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_THAT(results, ::testing::Each(IsOk()));
  ASSERT_OK_AND_ASSIGN(ListResult all, store().List(Query(1000)));
  EXPECT_EQ(all.jobs.size(), static_cast<size_t>(kThreads * kJobsPerThread));
}

TEST_P(JobStoreContractTest, ReadsSeeWholeCommits) {
  // Every commit creates two jobs; a reader must never see an odd number of them.
  constexpr int kCommits = 30;
  std::vector<std::vector<JobChange>> commits;
  for (int i = 0; i < kCommits; ++i) {
    commits.push_back(CreateChanges({NewJob(absl::StrCat("x", i)), NewJob(absl::StrCat("y", i))}));
  }
  std::atomic<bool> done = false;
  std::vector<size_t> odd_lists;
  std::vector<size_t> odd_queues;
  std::thread reader([&] {
    while (!done.load()) {
      absl::StatusOr<ListResult> all = store().List(Query(1000));
      if (all.ok() && all->jobs.size() % 2 != 0) odd_lists.push_back(all->jobs.size());
      absl::StatusOr<std::vector<IndexEntry>> queue =
          store().ScanQueue(absl::InfiniteFuture(), 1000);
      if (queue.ok() && queue->size() % 2 != 0) odd_queues.push_back(queue->size());
    }
  });
  std::vector<absl::Status> results;
  for (const std::vector<JobChange>& commit : commits) results.push_back(store().Commit(commit));
  done = true;
  reader.join();

  EXPECT_THAT(results, ::testing::Each(IsOk()));
  EXPECT_THAT(odd_lists, ::testing::IsEmpty());
  EXPECT_THAT(odd_queues, ::testing::IsEmpty());
}

// --- LastJobId ---

TEST_P(JobStoreContractTest, LastJobIdOfEmptyStoreIsEmpty) { EXPECT_EQ(Last(), ""); }

TEST_P(JobStoreContractTest, LastJobIdIsLargestId) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  JobRecord c = NewJob("c");
  for (const JobRecord* r : {&b, &c, &a}) ASSERT_OK(Create(*r));

  EXPECT_EQ(Last(), "c");
}

TEST_P(JobStoreContractTest, LastJobIdAfterDeletingLargest) {
  JobRecord a = NewJob("a");
  JobRecord b = NewJob("b");
  ASSERT_OK(Create(a));
  ASSERT_OK(Create(b));
  ASSERT_OK(Delete(b));

  EXPECT_EQ(Last(), "a");
}

// --- Durability and exclusivity ---

TEST_P(JobStoreContractTest, DataSurvivesReopen) {
  JobRecord a = NewJob("a");
  a.mutable_job()->set_request_id("req-1");
  JobRecord b = NewJob("b");
  ASSERT_OK(Create(a));
  ASSERT_OK(Create(b));
  JobRecord a2 = Claimed(a, kT0 + absl::Seconds(90));
  ASSERT_OK(Update(a, a2));

  Reopen();

  EXPECT_THAT(store().Get(a.job().id()), IsOkAndHolds(EqualsProto(a2)));
  EXPECT_EQ(AllJobs(), "b a");
  EXPECT_EQ(Events(a), "a/1:pending a/2:processing");
  EXPECT_EQ(Queue(), "b@2s");
  EXPECT_EQ(Leases(), "a@1m30s");
  EXPECT_EQ(Find("", "req-1"), "a");
  EXPECT_EQ(Last(), "b");
}

TEST_P(JobStoreContractTest, DeleteSurvivesReopen) {
  JobRecord a = NewJob("a");
  ASSERT_OK(Create(a));
  ASSERT_OK(Delete(a));

  Reopen();

  EXPECT_THAT(store().Get(a.job().id()), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(Events(a), "");
}

TEST_P(JobStoreContractTest, OpeningAnOpenStoreIsUnavailable) {
  EXPECT_THAT(GetParam().open(dir()), StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace exportd::testing
