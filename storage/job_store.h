// JobStore: the durable home of export jobs and of everything derived from them (the claim
// queue, the lease index, the event log for watch resume, part metadata and idempotency keys).
//
// The store knows nothing of the job state machine: callers compute each change as a pair of
// records (before, after) and the store writes the job and every index that follows from it in
// one atomic, synced write. What Commit acknowledged survives a crash of the process or of the
// machine.
//
// Thread safety: all methods are thread-safe. Commit calls are applied one after another; a
// read sees either all or none of a Commit.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "exportjobs/internal/v1/job_record.pb.h"
#include "exportjobs/v1/export_job.pb.h"

namespace exportd {

using JobRecord = exportjobs::internal::v1::JobRecord;
using ExportJob = exportjobs::v1::ExportJob;
using ExportJobStatus = exportjobs::v1::ExportJobStatus;
using EntityType = exportjobs::v1::EntityType;

// One change of one job. Exactly one of the cases:
//   create:  !before &&  after   (after->job().revision() == 1)
//   update:   before &&  after   (same id; after's revision is before's + 1)
//   delete:   before && !after
struct JobChange {
  std::optional<JobRecord> before;
  std::optional<JobRecord> after;
};

struct ListQuery {
  // Only jobs in this status / of this entity type; UNSPECIFIED matches all.
  ExportJobStatus status = exportjobs::v1::EXPORT_JOB_STATUS_UNSPECIFIED;
  EntityType entity_type = exportjobs::v1::ENTITY_TYPE_UNSPECIFIED;
  // Only jobs of this tenant; nullopt matches every tenant.
  std::optional<std::string> tenant;
  // Only jobs whose id sorts before this one (that is, older); empty starts at the newest job.
  std::string before_id;
  // At most this many jobs. REQUIRES: limit > 0.
  int limit = 50;
  // Examine at most this many stored jobs (matching or not); 0: no bound. A bounded scan that
  // stops before `limit` jobs matched returns what it found with `more` set, so a caller pages
  // through a sparse filter (one small tenant among many) in bounded steps.
  int64_t max_scanned = 0;
};

struct ListResult {
  // Newest first.
  std::vector<JobRecord> jobs;
  // True when more matching jobs may exist after the last one examined.
  bool more = false;
  // When `more`: the before_id that continues the listing (the last job examined; the last one
  // returned when the page filled up).
  std::string resume_before_id;
};

// An entry of an ordered index (the claim queue or the lease index).
struct IndexEntry {
  absl::Time time;  // ready_at for the queue, lease expiry for the lease index.
  std::string id;
  // The job's entity type (claim-queue entries only).
  EntityType entity_type = exportjobs::v1::ENTITY_TYPE_UNSPECIFIED;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Applies `changes` in order, atomically and durably: when it returns OK, all of them are in
  // a synced write; otherwise none is. For each change the store writes or deletes the job and
  // keeps in step, from the before and after records:
  //  - the event log: after's public job under (id, revision); a delete drops the job's events;
  //  - the claim queue: an entry (ready_at, id) exactly while the job is PENDING;
  //  - the lease index: an entry (lease.expires_at, id) exactly while the job is PROCESSING
  //    and has a lease;
  //  - idempotency: (tenant, request_id) -> id from the create of a job with a request_id
  //    until its delete;
  //  - part metadata: dropped with the job.
  // It does not check that `before` is what is stored: the caller owns the read-modify-write.
  // Errors: INVALID_ARGUMENT for a change that fits none of the cases; UNAVAILABLE when the
  // write failed (nothing was written).
  [[nodiscard]] virtual absl::Status Commit(std::span<const JobChange> changes) = 0;

  // The stored record. NOT_FOUND when no job has that id.
  virtual absl::StatusOr<JobRecord> Get(const std::string& id) const = 0;

  // Jobs matching `query`, newest first.
  virtual absl::StatusOr<ListResult> List(const ListQuery& query) const = 0;

  // The id of the job created with (tenant, request_id); nullopt when there is none.
  virtual absl::StatusOr<std::optional<std::string>> FindByRequestId(
      const std::string& tenant, const std::string& request_id) const = 0;

  // The job's snapshots with revision > after_revision, in revision order, at most `limit`.
  // Empty when the job has no such events (including when it does not exist).
  virtual absl::StatusOr<std::vector<ExportJob>> ReadEvents(const std::string& id,
                                                            int64_t after_revision,
                                                            int limit) const = 0;

  // Claim-queue entries with ready_at <= `ready_by`, earliest first, at most `limit`.
  virtual absl::StatusOr<std::vector<IndexEntry>> ScanQueue(absl::Time ready_by,
                                                            int limit) const = 0;

  // Lease-index entries with expiry <= `expired_by`, earliest first, at most `limit`.
  virtual absl::StatusOr<std::vector<IndexEntry>> ScanLeases(absl::Time expired_by,
                                                             int limit) const = 0;

  // The largest job id stored; empty when there are no jobs.
  virtual absl::StatusOr<std::string> LastJobId() const = 0;
};

}  // namespace exportd
