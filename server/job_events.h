// What a committed job change means to an operator: one event per change, derived from the
// change's before and after records and the cause the JobManager gives it. Metrics count these
// events and the log writes one line for each, so the two always agree.
//
// Thread safety: plain functions of their arguments.
#pragma once

#include <string_view>

#include "server/job_manager.h"
#include "storage/job_store.h"

namespace exportd {

enum class JobEvent {
  kCreated,          // a new pending job
  kClaimed,          // pending -> processing, under a new lease
  kProgress,         // a progress report (the job stays processing)
  kPartUploaded,     // a part was recorded
  kCancelRequested,  // cancel of a processing job, taking effect when the worker stops
  kCompleted,        // -> completed
  kFailed,           // -> failed (attempts used up, or a failure that is not retryable)
  kCancelled,        // -> cancelled
  kRetried,          // processing -> pending for another attempt, after a backoff
  kReleased,         // the worker gave the job back: pending at once, no attempt used
  kDeleted,          // removed (by request, or by the janitor after its retention)
  kFilesExpired,     // the janitor removed the files of an expired export
  kUpdated,          // any other change
};

struct ChangeMeaning {
  JobEvent event = JobEvent::kUpdated;
  // The change came from a lease expiry (the event is then kRetried, kFailed or kCancelled).
  bool lease_expired = false;
  // A delete by the janitor after the job's retention (rather than by request).
  bool by_janitor = false;
};

ChangeMeaning Classify(const JobChange& change, ChangeCause cause);

// The log event name: "job.created", "job.lease_expired" (for every change with
// lease_expired), ...
std::string_view EventName(const ChangeMeaning& meaning);

// Writes one log line per change of a group commit (JobManager::Options::on_commit_answering),
// with the job's id, revision and what the event is about:
//   job.created          entity_type, request_id
//   job.claimed          entity_type, worker_id, attempt
//   job.completed        entity_type, attempt, record_count, file_parts, file_size_bytes
//   job.failed (warn)    entity_type, attempt, error
//   job.retried          entity_type, attempt, error, retry_at
//   job.lease_expired (warn)  entity_type, worker_id, attempt, outcome (retried, failed,
//                        cancelled)
//   job.cancelled        entity_type
//   job.cancel_requested entity_type
//   job.released         entity_type, worker_id
//   job.deleted          reason (request, retention)
//   job.files_expired
//   job.progress, job.part_uploaded, job.updated (debug)
void LogCommit(const CommitReport& report);

}  // namespace exportd
