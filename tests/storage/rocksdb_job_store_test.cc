// RocksDbJobStore: the JobStore contract suite, plus what is particular to RocksDB (column
// families, part metadata, the status mapping, key-dependent validation).
#include "storage/rocksdb_job_store.h"

#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/timestamp.pb.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "storage/keys.h"
#include "storage/rocksdb_status.h"
#include "tests/status_matchers.h"
#include "tests/storage/job_store_contract_test.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

absl::StatusOr<std::unique_ptr<JobStore>> OpenRocksDb(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<RocksDbJobStore>> store = RocksDbJobStore::Open({.path = dir});
  if (!store.ok()) return store.status();
  return std::unique_ptr<JobStore>(std::move(*store));
}

INSTANTIATE_TEST_SUITE_P(RocksDb, JobStoreContractTest,
                         ::testing::Values(JobStoreFactory{"RocksDb", &OpenRocksDb}),
                         JobStoreFactoryName);

// Opens the database under a store's directory directly, with every column family.
class RawDb {
 public:
  // Read-only, the database's log is replayed into the memtables and left as it is.
  explicit RawDb(const std::string& path, bool read_only = false) {
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()}};
    for (std::string_view name : keys::kColumnFamilyNames) {
      descriptors.emplace_back(std::string(name), rocksdb::ColumnFamilyOptions());
    }
    rocksdb::DB* db = nullptr;
    status_ =
        read_only
            ? rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), path, descriptors, &handles_, &db)
            : rocksdb::DB::Open(rocksdb::DBOptions(), path, descriptors, &handles_, &db);
    db_.reset(db);
  }

  ~RawDb() {
    for (rocksdb::ColumnFamilyHandle* handle : handles_) {
      db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
    }
  }

  const rocksdb::Status& status() const { return status_; }
  rocksdb::DB* db() { return db_.get(); }
  rocksdb::ColumnFamilyHandle* family(keys::ColumnFamily family) {
    return handles_[keys::Index(family) + 1];
  }

  // Entries of every family that an open replayed from the log into the memtables.
  uint64_t ReplayedEntries() {
    uint64_t total = 0;
    for (rocksdb::ColumnFamilyHandle* handle : handles_) {
      uint64_t entries = 0;
      EXPECT_TRUE(db_->GetIntProperty(handle, "rocksdb.num-entries-active-mem-table", &entries));
      total += entries;
    }
    return total;
  }

  // All keys of one family.
  std::vector<std::string> Keys(keys::ColumnFamily family) {
    std::vector<std::string> result;
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), this->family(family)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) result.push_back(it->key().ToString());
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
    return result;
  }

 private:
  rocksdb::Status status_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

JobRecord Job(const std::string& id) {
  JobRecord record;
  record.mutable_job()->set_id(id);
  record.mutable_job()->set_status(exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  record.mutable_job()->set_revision(1);
  record.mutable_job()->mutable_created_at()->set_seconds(1'700'000'000);
  return record;
}

const std::string kIdA = "0000000000000001aaaaaaaa";
const std::string kIdB = "0000000000000001aaaaaaab";
const std::string kIdC = "0000000000000002aaaaaaaa";

class RocksDbJobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }

  std::unique_ptr<RocksDbJobStore> Open() {
    absl::StatusOr<std::unique_ptr<RocksDbJobStore>> store =
        RocksDbJobStore::Open({.path = dir_.path()});
    EXPECT_THAT(store, IsOk());
    return store.ok() ? std::move(*store) : nullptr;
  }

  TempDir dir_;
};

TEST_F(RocksDbJobStoreTest, CreatesAllColumnFamilies) {
  ASSERT_NE(Open(), nullptr);
  std::vector<std::string> families;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir_.path(), &families).ok());

  EXPECT_THAT(families,
              UnorderedElementsAreArray<std::string>(
                  {"default", "jobs", "queue", "leases", "events", "parts", "idempotency"}));
}

TEST_F(RocksDbJobStoreTest, WritesTheDocumentedKeys) {
  {
    std::unique_ptr<RocksDbJobStore> store = Open();
    ASSERT_NE(store, nullptr);
    JobRecord a = Job(kIdA);
    a.set_tenant("t");
    a.mutable_job()->set_request_id("r");
    ASSERT_OK(store->Commit(std::vector<JobChange>{{std::nullopt, a}}));
  }
  RawDb raw(dir_.path());
  ASSERT_TRUE(raw.status().ok()) << raw.status().ToString();
  const absl::Time created = absl::FromUnixSeconds(1'700'000'000);

  EXPECT_THAT(raw.Keys(keys::ColumnFamily::kJobs), ElementsAre(kIdA));
  EXPECT_THAT(raw.Keys(keys::ColumnFamily::kQueue), ElementsAre(keys::TimeIndexKey(created, kIdA)));
  EXPECT_THAT(raw.Keys(keys::ColumnFamily::kEvents), ElementsAre(keys::EventKey(kIdA, 1)));
  EXPECT_THAT(raw.Keys(keys::ColumnFamily::kIdempotency), ElementsAre(std::string("t\0r", 3)));
  EXPECT_THAT(raw.Keys(keys::ColumnFamily::kLeases), ::testing::IsEmpty());
  EXPECT_THAT(raw.Keys(keys::ColumnFamily::kParts), ::testing::IsEmpty());
}

TEST_F(RocksDbJobStoreTest, DeleteDropsThePartsOfThatJobOnly) {
  {
    std::unique_ptr<RocksDbJobStore> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_OK(store->Commit(std::vector<JobChange>{
        {std::nullopt, Job(kIdA)}, {std::nullopt, Job(kIdB)}, {std::nullopt, Job(kIdC)}}));
  }
  {
    // Nothing in the interface writes parts yet: put them in directly.
    RawDb raw(dir_.path());
    ASSERT_TRUE(raw.status().ok()) << raw.status().ToString();
    for (const std::string& id : {kIdA, kIdB, kIdC}) {
      for (int part = 1; part <= 2; ++part) {
        ASSERT_TRUE(raw.db()
                        ->Put(rocksdb::WriteOptions(), raw.family(keys::ColumnFamily::kParts),
                              keys::PartKey(id, part), "")
                        .ok());
      }
    }
  }
  {
    std::unique_ptr<RocksDbJobStore> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_OK(store->Commit(std::vector<JobChange>{{Job(kIdB), std::nullopt}}));
  }
  RawDb raw(dir_.path());
  ASSERT_TRUE(raw.status().ok()) << raw.status().ToString();

  EXPECT_THAT(raw.Keys(keys::ColumnFamily::kParts),
              ElementsAre(keys::PartKey(kIdA, 1), keys::PartKey(kIdA, 2), keys::PartKey(kIdC, 1),
                          keys::PartKey(kIdC, 2)));
}

// A store closed after writes leaves its data in table files: the next open has no log to
// replay (after 1,000,000 creates, replaying the log took an open 1.1 s).
TEST_F(RocksDbJobStoreTest, CloseLeavesNoLogToReplay) {
  constexpr int kJobs = 2000;
  std::vector<std::string> ids;
  {
    std::unique_ptr<RocksDbJobStore> store = Open();
    ASSERT_NE(store, nullptr);
    for (int batch = 0; batch < kJobs / 100; ++batch) {
      std::vector<JobChange> changes;
      for (int i = 0; i < 100; ++i) {
        ids.push_back(absl::StrCat("00000000000000", absl::Dec(batch, absl::kZeroPad2), "aaaa",
                                   absl::Dec(i, absl::kZeroPad4)));
        JobRecord job = Job(ids.back());
        job.mutable_job()->set_request_id(ids.back());
        changes.push_back({std::nullopt, job});
      }
      ASSERT_OK(store->Commit(changes));
    }
  }
  {
    // The read-only open replays whatever the log holds, and writes nothing.
    RawDb raw(dir_.path(), /*read_only=*/true);
    ASSERT_TRUE(raw.status().ok()) << raw.status().ToString();

    EXPECT_EQ(raw.ReplayedEntries(), 0u);
    EXPECT_THAT(raw.Keys(keys::ColumnFamily::kJobs), ElementsAreArray(ids));
    EXPECT_EQ(raw.Keys(keys::ColumnFamily::kQueue).size(), ids.size());
    EXPECT_EQ(raw.Keys(keys::ColumnFamily::kIdempotency).size(), ids.size());
  }
  std::unique_ptr<RocksDbJobStore> store = Open();
  ASSERT_NE(store, nullptr);
  for (const std::string& id : ids) {
    ASSERT_OK_AND_ASSIGN(JobRecord record, store->Get(id));
    EXPECT_EQ(record.job().id(), id);
  }
}

TEST_F(RocksDbJobStoreTest, MalformedIdIsInvalid) {
  std::unique_ptr<RocksDbJobStore> store = Open();
  ASSERT_NE(store, nullptr);

  EXPECT_THAT(store->Commit(std::vector<JobChange>{{std::nullopt, Job("job-1")}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("after.job.id")));
}

TEST_F(RocksDbJobStoreTest, TenantWithNulIsInvalid) {
  std::unique_ptr<RocksDbJobStore> store = Open();
  ASSERT_NE(store, nullptr);
  JobRecord a = Job(kIdA);
  a.set_tenant(std::string("t\0x", 3));

  EXPECT_THAT(store->Commit(std::vector<JobChange>{{std::nullopt, a}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tenant")));
}

TEST_F(RocksDbJobStoreTest, NonPositiveLimitsAreInvalid) {
  std::unique_ptr<RocksDbJobStore> store = Open();
  ASSERT_NE(store, nullptr);
  ListQuery query;
  query.limit = 0;

  EXPECT_THAT(store->List(query), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store->ReadEvents(kIdA, 0, 0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store->ScanQueue(absl::InfiniteFuture(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store->ScanLeases(absl::InfiniteFuture(), -1),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(RocksDbJobStoreTest, TimeBeforeEpochIsQueuedAtEpoch) {
  std::unique_ptr<RocksDbJobStore> store = Open();
  ASSERT_NE(store, nullptr);
  JobRecord a = Job(kIdA);
  a.mutable_job()->mutable_created_at()->set_seconds(-100);
  ASSERT_OK(store->Commit(std::vector<JobChange>{{std::nullopt, a}}));
  ASSERT_OK_AND_ASSIGN(std::vector<IndexEntry> queue, store->ScanQueue(absl::UnixEpoch(), 10));

  ASSERT_EQ(queue.size(), 1u);
  EXPECT_EQ(queue[0].time, absl::UnixEpoch());
}

TEST_F(RocksDbJobStoreTest, ScanBeforeEpochDoesNotCrash) {
  std::unique_ptr<RocksDbJobStore> store = Open();
  ASSERT_NE(store, nullptr);

  EXPECT_THAT(store->ScanLeases(absl::InfinitePast(), 10), IsOkAndHolds(::testing::IsEmpty()));
}

TEST_F(RocksDbJobStoreTest, ReadEventsOfMalformedIdIsEmpty) {
  std::unique_ptr<RocksDbJobStore> store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->Commit(std::vector<JobChange>{{std::nullopt, Job(kIdA)}}));

  EXPECT_THAT(store->ReadEvents(kIdA.substr(0, 16), 0, 10), IsOkAndHolds(::testing::IsEmpty()));
}

TEST_F(RocksDbJobStoreTest, OpenWithEmptyPathIsInvalid) {
  EXPECT_THAT(RocksDbJobStore::Open({}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(RocksDbJobStoreTest, OpenUnderARegularFileIsUnavailable) {
  const std::string file = dir_.path() + "/file";
  std::ofstream(file) << "not a directory";

  EXPECT_THAT(RocksDbJobStore::Open({.path = file + "/db"}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(file)));
}

TEST_F(RocksDbJobStoreTest, OpenLockedStoreNamesTheReason) {
  std::unique_ptr<RocksDbJobStore> store = Open();
  ASSERT_NE(store, nullptr);

  EXPECT_THAT(RocksDbJobStore::Open({.path = dir_.path()}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("lock")));
}

// --- FromRocksDbStatus ---

TEST(FromRocksDbStatusTest, Ok) { EXPECT_OK(FromRocksDbStatus(rocksdb::Status::OK())); }

TEST(FromRocksDbStatusTest, IoErrorIsUnavailable) {
  EXPECT_THAT(FromRocksDbStatus(rocksdb::Status::IOError("disk gone")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("disk gone")));
}

TEST(FromRocksDbStatusTest, NoSpaceIsUnavailable) {
  EXPECT_THAT(FromRocksDbStatus(rocksdb::Status::NoSpace()),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(FromRocksDbStatusTest, BusyIsUnavailable) {
  EXPECT_THAT(FromRocksDbStatus(rocksdb::Status::Busy()), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(FromRocksDbStatusTest, CorruptionIsDataLoss) {
  EXPECT_THAT(FromRocksDbStatus(rocksdb::Status::Corruption("bad block")),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bad block")));
}

TEST(FromRocksDbStatusTest, NotFoundIsNotFound) {
  EXPECT_THAT(FromRocksDbStatus(rocksdb::Status::NotFound()),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(FromRocksDbStatusTest, InvalidArgumentIsInvalidArgument) {
  EXPECT_THAT(FromRocksDbStatus(rocksdb::Status::InvalidArgument("no such family")),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FromRocksDbStatusTest, OtherIsInternal) {
  EXPECT_THAT(FromRocksDbStatus(rocksdb::Status::NotSupported()),
              StatusIs(absl::StatusCode::kInternal));
}

TEST(FromRocksDbStatusTest, ContextPrefixesMessage) {
  EXPECT_THAT(FromRocksDbStatus(rocksdb::Status::IOError("disk gone"), "writing"),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::StartsWith("writing: ")));
}

}  // namespace
}  // namespace exportd::testing
