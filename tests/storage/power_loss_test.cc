// Power loss: RocksDbJobStore keeps every Commit it acknowledged across a simulated power cut
// (PowerLossFileSystem), at many seeded crash points, including in the middle of a Commit and
// while the store is being opened. Also checks that the simulation really drops unsynced data,
// so that these tests can fail.
//
// How a crash is modelled: the file system "loses power" at a chosen mutating call of the test's
// thread (or between two commits), wherever RocksDB's background flushes and compactions are
// then: from then on nothing becomes durable, as on a machine that stopped; RocksDB's
// syncs still return OK, so it runs on without meeting errors, but nothing it writes from then
// on survives. Only then is the store destroyed: what RocksDB does on shutdown (flushing
// memtables, writing the MANIFEST) is lost too, so a clean close cannot hide a lost write.
// DropUnsyncedData then cuts the files back to what was synced before the cut (and undoes
// unsynced creates and renames), and the store is reopened the normal way. Every Commit that
// returned OK before the cut must be there, exactly; the one the cut interrupted may or may not
// be, but whole; the store must open and read without errors.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/job_id.h"
#include "gmock/gmock.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "rocksdb/options.h"
#include "storage/rocksdb_job_store.h"
#include "tests/status_matchers.h"
#include "tests/storage/power_loss_fs.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {
namespace {

using ::exportd::test_support::TempDir;
using exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED;
using exportjobs::v1::EXPORT_JOB_STATUS_PENDING;
using exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING;

constexpr char kTenant[] = "tenant-1";

google::protobuf::Timestamp ToProto(absl::Time time) {
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(absl::ToUnixSeconds(time));
  return timestamp;
}

absl::Time FromProto(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
}

// Acknowledged state: id -> record.
using Model = std::map<std::string, JobRecord>;

void Apply(const std::vector<JobChange>& changes, Model* model) {
  for (const JobChange& change : changes) {
    if (change.after) {
      (*model)[change.after->job().id()] = *change.after;
    } else {
      model->erase(change.before->job().id());
    }
  }
}

class PowerLossTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<RocksDbJobStore>> Open() {
    RocksDbJobStore::Options options;
    options.path = dir_.path();
    options.env = env_.get();
    return RocksDbJobStore::Open(options);
  }

  // The power goes off now (if it is not off yet); then the store is let go, its files are cut
  // back to what was synced, and the power comes back.
  void PowerCut(std::unique_ptr<RocksDbJobStore>* store) {
    fs_->Crash();
    store->reset();
    {
      const rocksdb::IOStatus dropped = fs_->DropUnsyncedData();
      ASSERT_TRUE(dropped.ok()) << dropped.ToString();
    }
    fs_->Revive();
  }

  // Where the store differs from `model`, one line per difference; empty when it matches.
  // `ids` are all ids ever created (so that deleted jobs are checked to be gone).
  static std::string Diff(const JobStore& store, const Model& model,
                          const std::vector<std::string>& ids) {
    std::vector<std::string> diffs;
    for (const std::string& id : ids) {
      absl::StatusOr<JobRecord> record = store.Get(id);
      auto expected = model.find(id);
      if (expected == model.end()) {
        if (!absl::IsNotFound(record.status())) {
          diffs.push_back(
              absl::StrCat("Get(", id, "): want NOT_FOUND, got ",
                           record.ok() ? record->ShortDebugString() : record.status().ToString()));
        }
        continue;
      }
      if (!record.ok()) {
        diffs.push_back(absl::StrCat("Get(", id, "): ", record.status().ToString()));
        continue;
      }
      if (!google::protobuf::util::MessageDifferencer::Equals(*record, expected->second)) {
        diffs.push_back(absl::StrCat(
            "Get(", id, "): want revision ", expected->second.job().revision(), " got revision ",
            record->job().revision(), " (", record->ShortDebugString(), ")"));
      }
      absl::StatusOr<std::vector<ExportJob>> events = store.ReadEvents(id, 0, 100000);
      std::vector<int64_t> revisions;
      if (events.ok()) {
        for (const ExportJob& event : *events) revisions.push_back(event.revision());
      }
      std::vector<int64_t> want_revisions;
      for (int64_t r = 1; r <= expected->second.job().revision(); ++r) want_revisions.push_back(r);
      if (!events.ok() || revisions != want_revisions) {
        diffs.push_back(absl::StrCat(
            "ReadEvents(", id, "): want revisions 1..", expected->second.job().revision(), ", got ",
            events.ok() ? absl::StrJoin(revisions, ",") : events.status().ToString()));
      }
      const std::string& request_id = expected->second.job().request_id();
      if (!request_id.empty()) {
        absl::StatusOr<std::optional<std::string>> found =
            store.FindByRequestId(kTenant, request_id);
        if (!found.ok() || *found != std::optional<std::string>(id)) {
          diffs.push_back(absl::StrCat("FindByRequestId(", request_id, "): want ", id));
        }
      }
    }

    // List: every job, newest (largest id) first.
    std::vector<std::string> want_list;
    for (auto it = model.rbegin(); it != model.rend(); ++it) want_list.push_back(it->first);
    ListQuery query;
    query.limit = 100000;
    absl::StatusOr<ListResult> list = store.List(query);
    std::vector<std::string> got_list;
    if (list.ok()) {
      for (const JobRecord& record : list->jobs) got_list.push_back(record.job().id());
    }
    if (!list.ok() || got_list != want_list) {
      diffs.push_back(absl::StrCat("List: want [", absl::StrJoin(want_list, " "), "], got ",
                                   list.ok() ? absl::StrCat("[", absl::StrJoin(got_list, " "), "]")
                                             : list.status().ToString()));
    }

    // The claim queue and the lease index, as "time|id" in index order.
    std::vector<std::pair<absl::Time, std::string>> want_queue;
    std::vector<std::pair<absl::Time, std::string>> want_leases;
    for (const auto& [id, record] : model) {
      if (record.job().status() == EXPORT_JOB_STATUS_PENDING) {
        want_queue.emplace_back(
            FromProto(record.has_ready_at() ? record.ready_at() : record.job().created_at()), id);
      }
      if (record.job().status() == EXPORT_JOB_STATUS_PROCESSING && record.has_lease()) {
        want_leases.emplace_back(FromProto(record.lease().expires_at()), id);
      }
    }
    std::sort(want_queue.begin(), want_queue.end());
    std::sort(want_leases.begin(), want_leases.end());
    const auto render = [](const auto& entries) {
      return absl::StrJoin(entries, " ", [](std::string* out, const auto& entry) {
        absl::StrAppend(out, absl::ToUnixSeconds(entry.first), "|", entry.second);
      });
    };
    const auto scanned = [](const absl::StatusOr<std::vector<IndexEntry>>& entries) {
      std::vector<std::pair<absl::Time, std::string>> result;
      if (entries.ok()) {
        for (const IndexEntry& entry : *entries) result.emplace_back(entry.time, entry.id);
      }
      return result;
    };
    absl::StatusOr<std::vector<IndexEntry>> queue = store.ScanQueue(absl::InfiniteFuture(), 100000);
    if (!queue.ok() || scanned(queue) != want_queue) {
      diffs.push_back(absl::StrCat(
          "ScanQueue: want [", render(want_queue), "], got ",
          queue.ok() ? absl::StrCat("[", render(scanned(queue)), "]") : queue.status().ToString()));
    }
    absl::StatusOr<std::vector<IndexEntry>> leases =
        store.ScanLeases(absl::InfiniteFuture(), 100000);
    if (!leases.ok() || scanned(leases) != want_leases) {
      diffs.push_back(absl::StrCat("ScanLeases: want [", render(want_leases), "], got ",
                                   leases.ok() ? absl::StrCat("[", render(scanned(leases)), "]")
                                               : leases.status().ToString()));
    }
    return absl::StrJoin(diffs, "\n");
  }

  TempDir dir_;
  std::shared_ptr<PowerLossFileSystem> fs_ =
      std::make_shared<PowerLossFileSystem>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env_ = rocksdb::NewCompositeEnv(fs_);
};

// Makes random but valid changes against the acknowledged state.
class Workload {
 public:
  explicit Workload(uint64_t seed) : random_(seed) {}

  // One Commit's changes: 1 to 3 changes of distinct jobs.
  std::vector<JobChange> NextCommit(const Model& model) {
    std::vector<JobChange> changes;
    std::vector<std::string> touched;
    const int count = Uniform(1, 3);
    for (int i = 0; i < count; ++i) {
      std::vector<const JobRecord*> candidates;
      for (const auto& [id, record] : model) {
        if (std::find(touched.begin(), touched.end(), id) == touched.end()) {
          candidates.push_back(&record);
        }
      }
      const int op = Uniform(0, 99);
      if (candidates.empty() || op < 35) {
        changes.push_back({std::nullopt, NewJob()});
        touched.push_back(changes.back().after->job().id());
        continue;
      }
      const JobRecord& before = *candidates[Uniform(0, static_cast<int>(candidates.size()) - 1)];
      touched.push_back(before.job().id());
      if (op < 45) {
        changes.push_back({before, std::nullopt});
      } else {
        changes.push_back({before, Changed(before)});
      }
    }
    return changes;
  }

  const std::vector<std::string>& ids() const { return ids_; }
  int Uniform(int low, int high) { return std::uniform_int_distribution<int>(low, high)(random_); }

 private:
  JobRecord NewJob() {
    clock_.Advance(absl::Seconds(1));
    JobRecord record;
    record.set_tenant(kTenant);
    ExportJob& job = *record.mutable_job();
    job.set_id(ids_generator_.Next());
    job.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
    job.set_status(EXPORT_JOB_STATUS_PENDING);
    job.add_fields("id");
    job.set_revision(1);
    if (Uniform(0, 1) == 0) job.set_request_id(absl::StrCat("request-", ids_.size()));
    *job.mutable_created_at() = ToProto(clock_.Now());
    *job.mutable_updated_at() = ToProto(clock_.Now());
    ids_.push_back(job.id());
    return record;
  }

  // The next revision: claimed, requeued, completed, or progress (whichever fits).
  JobRecord Changed(const JobRecord& before) {
    clock_.Advance(absl::Seconds(1));
    JobRecord next = before;
    ExportJob& job = *next.mutable_job();
    job.set_revision(before.job().revision() + 1);
    *job.mutable_updated_at() = ToProto(clock_.Now());
    if (job.status() == EXPORT_JOB_STATUS_PENDING) {
      job.set_status(EXPORT_JOB_STATUS_PROCESSING);
      job.set_attempt(job.attempt() + 1);
      next.mutable_lease()->set_token(absl::StrCat("token-", job.revision()));
      next.mutable_lease()->set_epoch(before.lease().epoch() + 1);
      *next.mutable_lease()->mutable_expires_at() =
          ToProto(clock_.Now() + absl::Seconds(Uniform(10, 100)));
    } else if (job.status() == EXPORT_JOB_STATUS_PROCESSING) {
      const int what = Uniform(0, 2);
      if (what == 0) {
        job.set_record_count(job.record_count() + Uniform(1, 1000));
      } else if (what == 1) {
        job.set_status(EXPORT_JOB_STATUS_PENDING);
        next.clear_lease();
        *next.mutable_ready_at() = ToProto(clock_.Now() + absl::Seconds(Uniform(1, 60)));
      } else {
        job.set_status(EXPORT_JOB_STATUS_COMPLETED);
        next.clear_lease();
        *job.mutable_completed_at() = ToProto(clock_.Now());
      }
    } else {
      job.set_error_message(absl::StrCat("note ", job.revision()));
    }
    return next;
  }

  std::mt19937 random_;
  FakeClock clock_;
  JobIdGenerator ids_generator_{&clock_};
  std::vector<std::string> ids_;
};

// 50 power cuts for each of 4 seeds (one test per seed, so that ctest can run them side by
// side). Each round goes on with the store recovered in the previous one, or
// (a fifth of the rounds, and the first) closes it and opens it again, with the power cut at a
// random mutating call of the open; then makes 1 to 12 commits, with the power cut at a random
// mutating call or, when that call is not reached, after the last commit. The calls counted are
// the test thread's own, so a seed cuts at the same calls in every run, however busy the
// machine keeps RocksDB's background threads.
class PowerLossSeedTest : public PowerLossTest, public ::testing::WithParamInterface<int> {};

TEST_P(PowerLossSeedTest, KeepsEveryAcknowledgedCommit) {
  constexpr int kCutsPerSeed = 50;
  const int seed = GetParam();
  Workload workload(seed);
  Model model;
  int commits_acknowledged = 0;
  // The store recovered (and checked) after the previous cut, kept open for the next round.
  std::unique_ptr<RocksDbJobStore> current;
  for (int cut = 0; cut < kCutsPerSeed; ++cut) {
    SCOPED_TRACE(absl::StrCat("seed ", seed, ", power cut ", cut));
    const bool cut_while_opening = current == nullptr || workload.Uniform(0, 4) == 0;
    const int commits = workload.Uniform(1, 12);
    absl::StatusOr<std::unique_ptr<RocksDbJobStore>> store = std::move(current);
    // Where the cut was armed, in mutating calls of this thread (-1: not armed there).
    int cut_in_open = -1;
    int cut_in_commits = -1;
    if (cut_while_opening) {
      store->reset();
      // An open is some tens of mutating calls.
      cut_in_open = workload.Uniform(0, 60);
      fs_->CrashAfter(cut_in_open);
      store = Open();
    }
    std::optional<std::vector<JobChange>> interrupted;
    if (store.ok()) {
      // A Commit is 2 to 4 mutating calls (WAL append, flush, sync, sometimes a directory
      // sync).
      if (!fs_->crashed()) {
        cut_in_commits = workload.Uniform(0, 3 * commits + 3);
        fs_->CrashAfter(cut_in_commits);
      }
      for (int i = 0; i < commits && !fs_->crashed(); ++i) {
        std::vector<JobChange> changes = workload.NextCommit(model);
        absl::Status status = (*store)->Commit(changes);
        if (fs_->crashed()) {
          // The power went during this Commit: it was not acknowledged, whatever it returned.
          interrupted = std::move(changes);
          break;
        }
        ASSERT_OK(status);
        Apply(changes, &model);
        ++commits_acknowledged;
      }
      PowerCut(&*store);
    } else {
      ASSERT_TRUE(fs_->crashed()) << "open failed without a power cut: " << store.status();
      std::unique_ptr<RocksDbJobStore> none;
      PowerCut(&none);
    }

    ASSERT_OK_AND_ASSIGN(current, Open());
    const std::string diff = Diff(*current, model, workload.ids());
    if (!diff.empty()) {
      // The interrupted Commit may have reached the disk in full; never in part.
      Model with_interrupted = model;
      if (interrupted) Apply(*interrupted, &with_interrupted);
      const std::string diff_with = Diff(*current, with_interrupted, workload.ids());
      ASSERT_TRUE(interrupted && diff_with.empty())
          << "acknowledged state lost after " << commits_acknowledged
          << " acknowledged commits; power cut armed at call " << cut_in_open << " of the open, "
          << cut_in_commits << " of the commits (-1: not armed there)\nvs acknowledged:\n"
          << diff << "\nvs acknowledged + interrupted:\n"
          << diff_with;
      model = std::move(with_interrupted);
    }
  }
  EXPECT_GT(commits_acknowledged, kCutsPerSeed);
}

INSTANTIATE_TEST_SUITE_P(Seeds, PowerLossSeedTest, ::testing::Values(1, 2, 3, 4));

// --- The simulation itself: these prove that it drops what was not synced. ---

std::string ReadFile(const std::string& path) {
  std::string content;
  const rocksdb::IOStatus status =
      rocksdb::ReadFileToString(rocksdb::FileSystem::Default().get(), path, &content);
  return status.ok() ? content : absl::StrCat("error: ", status.ToString());
}

bool Exists(const std::string& path) {
  return rocksdb::FileSystem::Default()->FileExists(path, rocksdb::IOOptions(), nullptr).ok();
}

class PowerLossFileSystemTest : public PowerLossTest {
 protected:
  // Writes `synced` then `unsynced` to a new file `name` under dir_, syncing in between.
  void Write(const std::string& name, const std::string& synced, const std::string& unsynced) {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    ASSERT_TRUE(fs_->NewWritableFile(Path(name), rocksdb::FileOptions(), &file, nullptr).ok());
    ASSERT_TRUE(file->Append(synced, rocksdb::IOOptions(), nullptr).ok());
    ASSERT_TRUE(file->Sync(rocksdb::IOOptions(), nullptr).ok());
    ASSERT_TRUE(file->Append(unsynced, rocksdb::IOOptions(), nullptr).ok());
    ASSERT_TRUE(file->Close(rocksdb::IOOptions(), nullptr).ok());
  }

  void SyncDir() {
    std::unique_ptr<rocksdb::FSDirectory> dir;
    ASSERT_TRUE(fs_->NewDirectory(dir_.path(), rocksdb::IOOptions(), &dir, nullptr).ok());
    ASSERT_TRUE(dir->Fsync(rocksdb::IOOptions(), nullptr).ok());
  }

  void Cut() {
    fs_->Crash();
    {
      const rocksdb::IOStatus dropped = fs_->DropUnsyncedData();
      ASSERT_TRUE(dropped.ok()) << dropped.ToString();
    }
    fs_->Revive();
  }

  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }
};

TEST_F(PowerLossFileSystemTest, DropsTheUnsyncedTail) {
  Write("f", "synced", "-lost");
  SyncDir();
  ASSERT_EQ(ReadFile(Path("f")), "synced-lost");
  Cut();
  EXPECT_EQ(ReadFile(Path("f")), "synced");
}

TEST_F(PowerLossFileSystemTest, RemovesAFileWhoseDirectoryWasNotSynced) {
  Write("f", "synced", "");
  Cut();
  EXPECT_FALSE(Exists(Path("f")));
}

TEST_F(PowerLossFileSystemTest, UndoesARenameWhoseDirectoryWasNotSynced) {
  Write("current", "old", "");
  SyncDir();
  Write("current.tmp", "new", "");
  ASSERT_TRUE(
      fs_->RenameFile(Path("current.tmp"), Path("current"), rocksdb::IOOptions(), nullptr).ok());
  ASSERT_EQ(ReadFile(Path("current")), "new");
  Cut();
  EXPECT_EQ(ReadFile(Path("current")), "old");
  EXPECT_FALSE(Exists(Path("current.tmp")));
}

TEST_F(PowerLossFileSystemTest, KeepsARenameOnceTheDirectoryIsSynced) {
  Write("current", "old", "");
  Write("current.tmp", "new", "");
  ASSERT_TRUE(
      fs_->RenameFile(Path("current.tmp"), Path("current"), rocksdb::IOOptions(), nullptr).ok());
  SyncDir();
  Cut();
  EXPECT_EQ(ReadFile(Path("current")), "new");
  EXPECT_FALSE(Exists(Path("current.tmp")));
}

TEST_F(PowerLossFileSystemTest, SyncsAfterThePowerCutKeepNothing) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  ASSERT_TRUE(fs_->NewWritableFile(Path("f"), rocksdb::FileOptions(), &file, nullptr).ok());
  SyncDir();
  fs_->CrashAfter(1);
  EXPECT_TRUE(file->Append("a", rocksdb::IOOptions(), nullptr).ok());
  EXPECT_FALSE(fs_->crashed());
  EXPECT_TRUE(file->Sync(rocksdb::IOOptions(), nullptr).ok());
  EXPECT_TRUE(fs_->crashed());
  file.reset();
  // What could not be undone is refused.
  EXPECT_TRUE(fs_->DeleteFile(Path("f"), rocksdb::IOOptions(), nullptr).IsIOError());
  {
    const rocksdb::IOStatus dropped = fs_->DropUnsyncedData();
    ASSERT_TRUE(dropped.ok()) << dropped.ToString();
  }
  fs_->Revive();
  EXPECT_EQ(ReadFile(Path("f")), "");
}

// The cut counts only the arming thread's calls: another thread's writes (as RocksDB's
// compactions) neither bring it forward nor use up the calls before it.
TEST_F(PowerLossFileSystemTest, CrashAfterCountsOnlyTheCallingThreadsCalls) {
  std::unique_ptr<rocksdb::FSWritableFile> mine;
  std::unique_ptr<rocksdb::FSWritableFile> other;
  ASSERT_TRUE(fs_->NewWritableFile(Path("mine"), rocksdb::FileOptions(), &mine, nullptr).ok());
  ASSERT_TRUE(fs_->NewWritableFile(Path("other"), rocksdb::FileOptions(), &other, nullptr).ok());
  SyncDir();
  fs_->CrashAfter(2);
  std::thread before([&] {
    for (int i = 0; i < 5; ++i) {
      EXPECT_TRUE(other->Append("b", rocksdb::IOOptions(), nullptr).ok());
    }
    EXPECT_TRUE(other->Sync(rocksdb::IOOptions(), nullptr).ok());
  });
  before.join();
  EXPECT_FALSE(fs_->crashed());
  EXPECT_TRUE(mine->Append("a", rocksdb::IOOptions(), nullptr).ok());
  EXPECT_TRUE(mine->Append("a", rocksdb::IOOptions(), nullptr).ok());
  EXPECT_FALSE(fs_->crashed());
  EXPECT_TRUE(mine->Sync(rocksdb::IOOptions(), nullptr).ok());
  EXPECT_TRUE(fs_->crashed());
  // Once the power is off, it is off for every thread.
  std::thread after([&] {
    EXPECT_TRUE(other->Append("c", rocksdb::IOOptions(), nullptr).ok());
    EXPECT_TRUE(other->Sync(rocksdb::IOOptions(), nullptr).ok());
  });
  after.join();
  mine.reset();
  other.reset();
  {
    const rocksdb::IOStatus dropped = fs_->DropUnsyncedData();
    ASSERT_TRUE(dropped.ok()) << dropped.ToString();
  }
  fs_->Revive();
  EXPECT_EQ(ReadFile(Path("mine")), "");
  EXPECT_EQ(ReadFile(Path("other")), "bbbbb");
}

// The end-to-end control: RocksDB on the simulation loses a write that was not synced and keeps
// one that was, across a power cut with the database still open.
TEST_F(PowerLossFileSystemTest, RocksDbLosesAnUnsyncedWrite) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.env = env_.get();
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, dir_.path(), &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions synced;
  synced.sync = true;
  ASSERT_TRUE(db->Put(synced, "kept", "1").ok());
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "lost", "2").ok());
  std::string value;
  ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "lost", &value).ok());

  fs_->Crash();
  db.reset();
  {
    const rocksdb::IOStatus dropped = fs_->DropUnsyncedData();
    ASSERT_TRUE(dropped.ok()) << dropped.ToString();
  }
  fs_->Revive();

  ASSERT_TRUE(rocksdb::DB::Open(options, dir_.path(), &raw).ok());
  db.reset(raw);
  EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), "kept", &value).ok());
  EXPECT_EQ(value, "1");
  EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), "lost", &value).IsNotFound());
}

// And through the store: a job written into the WAL but not synced (as a Commit interrupted
// between its append and its sync) is gone after the cut, and the check above notices.
TEST_F(PowerLossTest, DiffReportsAJobThatWasNotSynced) {
  Workload workload(7);
  Model model;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<RocksDbJobStore> store, Open());
  std::vector<JobChange> first = workload.NextCommit(model);
  ASSERT_OK(store->Commit(first));
  Apply(first, &model);
  std::vector<JobChange> second = workload.NextCommit(model);
  // Power goes at the WAL sync: the append is on disk, unsynced; the Commit returns OK, but
  // only after the machine stopped.
  fs_->CrashAfter(1);
  EXPECT_OK(store->Commit(second));
  ASSERT_TRUE(fs_->crashed());
  PowerCut(&store);
  Model with_second = model;
  Apply(second, &with_second);

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<RocksDbJobStore> recovered, Open());
  EXPECT_EQ(Diff(*recovered, model, workload.ids()), "");
  EXPECT_NE(Diff(*recovered, with_second, workload.ids()), "");
}

}  // namespace
}  // namespace exportd::testing
