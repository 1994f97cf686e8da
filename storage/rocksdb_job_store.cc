#include "storage/rocksdb_job_store.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/job_id.h"
#include "common/status_macros.h"
#include "google/protobuf/timestamp.pb.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/iterator.h"
#include "rocksdb/options.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "storage/keys.h"
#include "storage/rocksdb_status.h"

namespace exportd {
namespace {

using keys::ColumnFamily;

constexpr int kBloomBitsPerKey = 10;
// The memtable's bloom filter, as a share of the memtable's size (RocksDB caps it at 0.25).
constexpr double kMemtableBloomRatio = 0.02;
// The idempotency family's memtable: its keys (tenant, request_id) arrive in random order, so
// each insert searches the skip list from the top; a small memtable keeps that search in the
// CPU's caches (with 64 MiB it was 15 % of the server's samples under 64 outstanding creates).
constexpr size_t kIdempotencyWriteBuffer = size_t{4} << 20;

absl::Time ToTime(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
}

// An id or other caller-supplied string, quoted and escaped for an error message.
std::string Quote(const std::string& s) { return absl::StrCat("\"", absl::CHexEscape(s), "\""); }

// For messages (absl::string_view is not std::string_view in this Abseil).
std::string FamilyName(ColumnFamily family) {
  return std::string(keys::kColumnFamilyNames[keys::Index(family)]);
}

// --- Options ---

rocksdb::ColumnFamilyOptions FamilyOptions(std::optional<ColumnFamily> family,
                                           const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::ColumnFamilyOptions options;
  options.compaction_style = rocksdb::kCompactionStyleLevel;
  options.level_compaction_dynamic_level_bytes = true;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  if (family == ColumnFamily::kJobs || family == ColumnFamily::kIdempotency) {
    // Point lookups (Get, FindByRequestId): a whole-key filter, in the table files and in the
    // memtable. Every create looks up its request_id, nearly always one that is not stored;
    // without the memtable's filter each such look-up searched the memtable's skip list.
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kBloomBitsPerKey));
    options.memtable_whole_key_filtering = true;
    options.memtable_prefix_bloom_size_ratio = kMemtableBloomRatio;
    if (family == ColumnFamily::kIdempotency) {
      options.write_buffer_size = kIdempotencyWriteBuffer;
    }
  } else if (family == ColumnFamily::kEvents) {
    // Only read by scans within one job's id: a filter on the id prefix instead.
    options.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(kJobIdLength));
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kBloomBitsPerKey));
    table.whole_key_filtering = false;
  }
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return options;
}

// --- Validation of changes ---

absl::Status InvalidChange(size_t index, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("change ", index, ": ", why));
}

absl::Status ValidateRecord(size_t index, const char* which, const JobRecord& record) {
  if (!IsWellFormedJobId(record.job().id())) {
    return InvalidChange(index, absl::StrCat(which, ".job.id ", Quote(record.job().id()),
                                             " is not a well-formed job id"));
  }
  if (record.tenant().find('\0') != std::string::npos) {
    return InvalidChange(index, absl::StrCat(which, ".tenant contains a NUL character"));
  }
  return absl::OkStatus();
}

absl::Status ValidateChange(size_t index, const JobChange& change) {
  if (!change.before && !change.after) {
    return InvalidChange(index, "before and after are both empty");
  }
  if (change.before) EXPORTD_RETURN_IF_ERROR(ValidateRecord(index, "before", *change.before));
  if (change.after) EXPORTD_RETURN_IF_ERROR(ValidateRecord(index, "after", *change.after));
  if (!change.before) {
    const int64_t revision = change.after->job().revision();
    if (revision != 1) {
      return InvalidChange(index,
                           absl::StrCat("a create needs after.job.revision 1, got ", revision));
    }
  } else if (change.after) {
    const ExportJob& before = change.before->job();
    const ExportJob& after = change.after->job();
    if (before.id() != after.id()) {
      return InvalidChange(
          index, absl::StrCat("an update needs the same id in before and after, "
                              "got before.job.id ",
                              Quote(before.id()), " and after.job.id ", Quote(after.id())));
    }
    if (before.revision() < 1 || before.revision() == INT64_MAX) {
      return InvalidChange(
          index, absl::StrCat("before.job.revision ", before.revision(), " is out of range"));
    }
    if (after.revision() != before.revision() + 1) {
      return InvalidChange(
          index, absl::StrCat("an update needs after.job.revision ", before.revision() + 1,
                              " (before's + 1), got ", after.revision()));
    }
  }
  return absl::OkStatus();
}

// --- Index entries that follow from a record ---

struct IndexKeys {
  std::optional<std::string> queue;        // While PENDING.
  std::optional<std::string> lease;        // While PROCESSING with a lease.
  std::optional<std::string> idempotency;  // While the job exists, if it has a request_id.
};

IndexKeys IndexKeysOf(const JobRecord& record) {
  const ExportJob& job = record.job();
  IndexKeys index;
  if (job.status() == exportjobs::v1::EXPORT_JOB_STATUS_PENDING) {
    const absl::Time ready_at =
        record.has_ready_at() ? ToTime(record.ready_at()) : ToTime(job.created_at());
    index.queue = keys::TimeIndexKey(ready_at, job.id());
  }
  if (job.status() == exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING && record.has_lease()) {
    index.lease = keys::TimeIndexKey(ToTime(record.lease().expires_at()), job.id());
  }
  if (!job.request_id().empty()) {
    index.idempotency = keys::IdempotencyKey(record.tenant(), job.request_id());
  }
  return index;
}

// --- The store ---

using Handles = std::array<rocksdb::ColumnFamilyHandle*, keys::kColumnFamilyCount>;

// One open instance of the database with its column family handles; closed when destroyed.
struct Database {
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* default_handle = nullptr;
  Handles handles{};
  bool read_only = false;

  Database() = default;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database() {
    if (!db) return;
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      db->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
    }
    db->DestroyColumnFamilyHandle(default_handle).PermitUncheckedError();
    // Every acknowledged write is already in the synced WAL; a failed close loses nothing.
    db->Close().PermitUncheckedError();
  }
};

// Opens the database at options.path (read-only: no write, no lock, for reads only).
absl::StatusOr<std::unique_ptr<Database>> OpenDatabase(const RocksDbJobStore::Options& options,
                                                       const std::shared_ptr<rocksdb::Cache>& cache,
                                                       bool read_only = false) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.IncreaseParallelism(2);
  db_options.keep_log_file_num = 10;
  if (options.env != nullptr) db_options.env = options.env;

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, FamilyOptions(std::nullopt, cache));
  for (size_t i = 0; i < keys::kColumnFamilyCount; ++i) {
    descriptors.emplace_back(std::string(keys::kColumnFamilyNames[i]),
                             FamilyOptions(static_cast<ColumnFamily>(i), cache));
  }

  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  const rocksdb::Status opened =
      read_only ? rocksdb::DB::OpenForReadOnly(db_options, options.path, descriptors, &handles, &db)
                : rocksdb::DB::Open(db_options, options.path, descriptors, &handles, &db);
  EXPORTD_RETURN_IF_ERROR(
      FromRocksDbStatus(opened, absl::StrCat("opening the job store at ", options.path)));
  auto database = std::make_unique<Database>();
  database->db.reset(db);
  database->read_only = read_only;
  // On success RocksDB returns one handle per descriptor, in order.
  database->default_handle = handles[0];
  for (size_t i = 0; i < keys::kColumnFamilyCount; ++i) database->handles[i] = handles[i + 1];
  return database;
}

class RocksDbJobStoreImpl final : public RocksDbJobStore {
 public:
  RocksDbJobStoreImpl(Options options, std::shared_ptr<rocksdb::Cache> cache,
                      std::unique_ptr<Database> database)
      : options_(std::move(options)), cache_(std::move(cache)), database_(std::move(database)) {}

  RocksDbJobStoreImpl(const RocksDbJobStoreImpl&) = delete;
  RocksDbJobStoreImpl& operator=(const RocksDbJobStoreImpl&) = delete;

  // Writes every family's memtable to table files before the close, so that the next open has
  // no log to replay (with the log on, RocksDB's Close leaves unflushed data to the log: after
  // a burst of creates the next open replayed all of it, 1.1 s for 1,000,000 jobs, and then
  // flushed it). Durability does not depend on it: every acknowledged write is in the synced
  // log, and a flush that fails (or a close without one, as after a failed write or a crash)
  // leaves the log to be replayed.
  ~RocksDbJobStoreImpl() override {
    if (database_ == nullptr || database_->read_only || write_failed_.load()) return;
    std::vector<rocksdb::ColumnFamilyHandle*> families(database_->handles.begin(),
                                                       database_->handles.end());
    families.push_back(database_->default_handle);
    rocksdb::FlushOptions options;
    options.wait = true;
    options.allow_write_stall = true;
    database_->db->Flush(options, families).PermitUncheckedError();
  }

  absl::Status Commit(std::span<const JobChange> changes) override {
    for (size_t i = 0; i < changes.size(); ++i) {
      EXPORTD_RETURN_IF_ERROR(ValidateChange(i, changes[i]));
    }
    if (changes.empty()) return absl::OkStatus();
    if (write_failed_.load()) EXPORTD_RETURN_IF_ERROR(Recover());
    std::shared_lock lock(mu_);
    EXPORTD_RETURN_IF_ERROR(Usable());
    rocksdb::WriteBatch batch;
    for (const JobChange& change : changes) {
      EXPORTD_RETURN_IF_ERROR(AddChange(change, &batch));
    }
    rocksdb::WriteOptions options;
    options.sync = true;
    const rocksdb::Status written = database_->db->Write(options, &batch);
    if (!written.ok()) write_failed_.store(true);
    return FromRocksDbStatus(written, "writing the job changes");
  }

  absl::StatusOr<JobRecord> Get(const std::string& id) const override {
    std::shared_lock lock(mu_);
    EXPORTD_RETURN_IF_ERROR(Usable());
    std::string value;
    const rocksdb::Status status = database_->db->Get(
        rocksdb::ReadOptions(), Family(ColumnFamily::kJobs), keys::JobKey(id), &value);
    if (status.IsNotFound()) return absl::NotFoundError(absl::StrCat("no job ", Quote(id)));
    EXPORTD_RETURN_IF_ERROR(FromRocksDbStatus(status, absl::StrCat("reading job ", Quote(id))));
    JobRecord record;
    if (!record.ParseFromString(value)) {
      return absl::DataLossError(absl::StrCat("job ", Quote(id), ": unparsable record"));
    }
    return record;
  }

  absl::StatusOr<ListResult> List(const ListQuery& query) const override {
    if (query.limit <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("ListQuery.limit must be positive, got ", query.limit));
    }
    std::shared_lock lock(mu_);
    EXPORTD_RETURN_IF_ERROR(Usable());
    rocksdb::ReadOptions options;
    const rocksdb::Slice upper_bound(query.before_id);
    if (!query.before_id.empty()) options.iterate_upper_bound = &upper_bound;
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db->NewIterator(options, Family(ColumnFamily::kJobs)));
    ListResult result;
    int64_t scanned = 0;
    for (it->SeekToLast(); it->Valid(); it->Prev()) {
      if (query.max_scanned > 0 && scanned == query.max_scanned) {
        result.more = true;  // resume_before_id: the last key examined, set below.
        break;
      }
      ++scanned;
      result.resume_before_id = it->key().ToString();
      JobRecord record;
      if (!record.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError(
            absl::StrCat("job ", Quote(it->key().ToString()), ": unparsable record"));
      }
      if (!Matches(query, record)) continue;
      if (result.jobs.size() == static_cast<size_t>(query.limit)) {
        result.more = true;
        result.resume_before_id = result.jobs.back().job().id();
        break;
      }
      result.jobs.push_back(std::move(record));
    }
    if (!result.more) result.resume_before_id.clear();
    EXPORTD_RETURN_IF_ERROR(FromRocksDbStatus(it->status(), "listing jobs"));
    return result;
  }

  absl::StatusOr<std::optional<std::string>> FindByRequestId(
      const std::string& tenant, const std::string& request_id) const override {
    // No key can hold these: a job without a request_id has no entry, and tenants with '\0'
    // are refused by Commit.
    if (request_id.empty() || tenant.find('\0') != std::string::npos) return std::nullopt;
    std::shared_lock lock(mu_);
    EXPORTD_RETURN_IF_ERROR(Usable());
    std::string id;
    const rocksdb::Status status =
        database_->db->Get(rocksdb::ReadOptions(), Family(ColumnFamily::kIdempotency),
                           keys::IdempotencyKey(tenant, request_id), &id);
    if (status.IsNotFound()) return std::nullopt;
    EXPORTD_RETURN_IF_ERROR(FromRocksDbStatus(status, "reading an idempotency key"));
    return id;
  }

  absl::StatusOr<std::vector<ExportJob>> ReadEvents(const std::string& id, int64_t after_revision,
                                                    int limit) const override {
    std::shared_lock lock(mu_);
    EXPORTD_RETURN_IF_ERROR(Usable());
    if (limit <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("limit must be positive, got ", limit));
    }
    std::vector<ExportJob> events;
    // Other ids could match a shorter or longer id by prefix; no job has such an id.
    if (!IsWellFormedJobId(id) || after_revision == INT64_MAX) return events;
    const std::string lower = keys::EventKey(id, after_revision < 0 ? 0 : after_revision + 1);
    const std::string upper = keys::JobPrefixEnd(id);
    const rocksdb::Slice lower_bound(lower);
    const rocksdb::Slice upper_bound(upper);
    rocksdb::ReadOptions options;
    options.iterate_lower_bound = &lower_bound;
    options.iterate_upper_bound = &upper_bound;
    options.prefix_same_as_start = true;
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db->NewIterator(options, Family(ColumnFamily::kEvents)));
    for (it->Seek(lower); it->Valid() && events.size() < static_cast<size_t>(limit); it->Next()) {
      ExportJob& event = events.emplace_back();
      if (!event.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError(absl::StrCat("job ", Quote(id), ": unparsable event"));
      }
    }
    EXPORTD_RETURN_IF_ERROR(
        FromRocksDbStatus(it->status(), absl::StrCat("reading the events of job ", Quote(id))));
    return events;
  }

  absl::StatusOr<std::vector<IndexEntry>> ScanQueue(absl::Time ready_by, int limit) const override {
    return ScanTimeIndex(ColumnFamily::kQueue, ready_by, limit);
  }

  absl::StatusOr<std::vector<IndexEntry>> ScanLeases(absl::Time expired_by,
                                                     int limit) const override {
    return ScanTimeIndex(ColumnFamily::kLeases, expired_by, limit);
  }

  absl::StatusOr<std::string> LastJobId() const override {
    std::shared_lock lock(mu_);
    EXPORTD_RETURN_IF_ERROR(Usable());
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db->NewIterator(rocksdb::ReadOptions(), Family(ColumnFamily::kJobs)));
    it->SeekToLast();
    std::string id = it->Valid() ? it->key().ToString() : std::string();
    EXPORTD_RETURN_IF_ERROR(FromRocksDbStatus(it->status(), "reading the last job id"));
    return id;
  }

 private:
  // REQUIRES: mu_ held (shared), and Usable().
  rocksdb::ColumnFamilyHandle* Family(ColumnFamily family) const {
    return database_->handles[keys::Index(family)];
  }

  // OK while the database is open (it is not only while a reopen failed). REQUIRES: mu_ held.
  absl::Status Usable() const {
    if (database_ != nullptr) return absl::OkStatus();
    return absl::UnavailableError(
        "the job store is closed: reopening it after a failed write failed; the next write "
        "tries again");
  }

  // After a failed write RocksDB keeps the error and refuses every later write until it is
  // resumed or reopened. The store reopens it (replaying the synced log, so nothing
  // acknowledged is lost): DB::Resume is not used, because after a failed log write it can
  // clear the error (a "hard" one, as for no space) and let the next write append to the log
  // writer that failed, which RocksDB's assertions abort on. When the reopen fails (the disk
  // still refuses), the database is opened read-only so that reads go on, and the next Commit
  // tries again.
  absl::Status Recover() {
    std::unique_lock lock(mu_);                          // Waits for the reads in progress.
    if (!write_failed_.load()) return absl::OkStatus();  // Another Commit recovered it.
    database_.reset();
    absl::StatusOr<std::unique_ptr<Database>> reopened = OpenDatabase(options_, cache_);
    if (reopened.ok()) {
      database_ = *std::move(reopened);
      write_failed_.store(false);
      return absl::OkStatus();
    }
    absl::StatusOr<std::unique_ptr<Database>> read_only =
        OpenDatabase(options_, cache_, /*read_only=*/true);
    if (read_only.ok()) database_ = *std::move(read_only);
    return absl::UnavailableError(absl::StrCat("reopening the job store after a failed write: ",
                                               reopened.status().message()));
  }

  static bool Matches(const ListQuery& query, const JobRecord& record) {
    const ExportJob& job = record.job();
    return (!query.tenant || record.tenant() == *query.tenant) &&
           (query.status == exportjobs::v1::EXPORT_JOB_STATUS_UNSPECIFIED ||
            job.status() == query.status) &&
           (query.entity_type == exportjobs::v1::ENTITY_TYPE_UNSPECIFIED ||
            job.entity_type() == query.entity_type);
  }

  // Replaces the entry `before` by `after` (either may be absent) in an index family.
  absl::Status ReplaceIndexEntry(ColumnFamily family, const std::optional<std::string>& before,
                                 const std::optional<std::string>& after, const std::string& value,
                                 rocksdb::WriteBatch* batch) const {
    if (before == after) return absl::OkStatus();
    if (before) {
      EXPORTD_RETURN_IF_ERROR(FromRocksDbStatus(batch->Delete(Family(family), *before)));
    }
    if (after) {
      EXPORTD_RETURN_IF_ERROR(FromRocksDbStatus(batch->Put(Family(family), *after, value)));
    }
    return absl::OkStatus();
  }

  // Adds the writes of one validated change to `batch`.
  absl::Status AddChange(const JobChange& change, rocksdb::WriteBatch* batch) const {
    const std::string& id = change.after ? change.after->job().id() : change.before->job().id();
    const IndexKeys before = change.before ? IndexKeysOf(*change.before) : IndexKeys{};
    const IndexKeys after = change.after ? IndexKeysOf(*change.after) : IndexKeys{};
    // A queue entry's value is the job's entity type, so that claims can pick by type from the
    // index alone.
    const std::string entity_type =
        change.after ? absl::StrCat(change.after->job().entity_type()) : "";
    EXPORTD_RETURN_IF_ERROR(
        ReplaceIndexEntry(ColumnFamily::kQueue, before.queue, after.queue, entity_type, batch));
    EXPORTD_RETURN_IF_ERROR(
        ReplaceIndexEntry(ColumnFamily::kLeases, before.lease, after.lease, "", batch));
    EXPORTD_RETURN_IF_ERROR(ReplaceIndexEntry(ColumnFamily::kIdempotency, before.idempotency,
                                              after.idempotency, id, batch));
    if (change.after) {
      std::string record;
      std::string event;
      if (!change.after->SerializeToString(&record) ||
          !change.after->job().SerializeToString(&event)) {
        return absl::InternalError(absl::StrCat("job ", Quote(id), ": cannot serialize"));
      }
      EXPORTD_RETURN_IF_ERROR(
          FromRocksDbStatus(batch->Put(Family(ColumnFamily::kJobs), keys::JobKey(id), record)));
      EXPORTD_RETURN_IF_ERROR(
          FromRocksDbStatus(batch->Put(Family(ColumnFamily::kEvents),
                                       keys::EventKey(id, change.after->job().revision()), event)));
    } else {
      const std::string start = keys::JobPrefixStart(id);
      const std::string end = keys::JobPrefixEnd(id);
      EXPORTD_RETURN_IF_ERROR(
          FromRocksDbStatus(batch->Delete(Family(ColumnFamily::kJobs), keys::JobKey(id))));
      EXPORTD_RETURN_IF_ERROR(
          FromRocksDbStatus(batch->DeleteRange(Family(ColumnFamily::kEvents), start, end)));
      EXPORTD_RETURN_IF_ERROR(
          FromRocksDbStatus(batch->DeleteRange(Family(ColumnFamily::kParts), start, end)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<IndexEntry>> ScanTimeIndex(ColumnFamily family, absl::Time by,
                                                        int limit) const {
    std::shared_lock lock(mu_);
    EXPORTD_RETURN_IF_ERROR(Usable());
    if (limit <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("limit must be positive, got ", limit));
    }
    const std::string upper = keys::TimeIndexUpperBound(by);
    const rocksdb::Slice upper_bound(upper);
    rocksdb::ReadOptions options;
    options.iterate_upper_bound = &upper_bound;
    std::unique_ptr<rocksdb::Iterator> it(database_->db->NewIterator(options, Family(family)));
    std::vector<IndexEntry> entries;
    for (it->SeekToFirst(); it->Valid() && entries.size() < static_cast<size_t>(limit);
         it->Next()) {
      const std::optional<keys::TimeIndexEntry> entry =
          keys::DecodeTimeIndexKey(std::string_view(it->key().data(), it->key().size()));
      if (!entry) {
        return absl::DataLossError(
            absl::StrCat(FamilyName(family), ": malformed key ", Quote(it->key().ToString())));
      }
      IndexEntry index_entry{entry->time, std::string(entry->id)};
      int entity_type = 0;
      if (family == ColumnFamily::kQueue &&
          absl::SimpleAtoi(absl::string_view(it->value().data(), it->value().size()),
                           &entity_type)) {
        index_entry.entity_type = static_cast<EntityType>(entity_type);
      }
      entries.push_back(std::move(index_entry));
    }
    EXPORTD_RETURN_IF_ERROR(
        FromRocksDbStatus(it->status(), absl::StrCat("scanning ", FamilyName(family))));
    return entries;
  }

  const Options options_;
  const std::shared_ptr<rocksdb::Cache> cache_;
  // Reads and writes hold it shared; a reopen holds it exclusively.
  mutable std::shared_mutex mu_;
  // Null only while a reopen failed and even a read-only open did.
  std::unique_ptr<Database> database_;
  // Set by a failed write: the next Commit recovers the database first.
  std::atomic<bool> write_failed_{false};
};

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbJobStore>> RocksDbJobStore::Open(const Options& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("RocksDbJobStore::Options.path is empty");
  }
  std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  EXPORTD_ASSIGN_OR_RETURN(std::unique_ptr<Database> database, OpenDatabase(options, cache));
  return std::make_unique<RocksDbJobStoreImpl>(options, std::move(cache), std::move(database));
}

}  // namespace exportd
