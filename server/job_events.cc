#include "server/job_events.h"

namespace exportd {

ChangeMeaning Classify(const JobChange& change, ChangeCause cause) {
  ChangeMeaning meaning;
  meaning.lease_expired = cause == ChangeCause::kLeaseExpiry;
  if (!change.before) {
    meaning.event = JobEvent::kCreated;
    return meaning;
  }
  if (!change.after) {
    meaning.event = JobEvent::kDeleted;
    meaning.by_janitor = cause == ChangeCause::kRetention;
    return meaning;
  }
  const ExportJobStatus before = change.before->job().status();
  const ExportJobStatus after = change.after->job().status();
  if (before != after) {
    switch (after) {
      case exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING:
        meaning.event = JobEvent::kClaimed;
        return meaning;
      case exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED:
        meaning.event = JobEvent::kCompleted;
        return meaning;
      case exportjobs::v1::EXPORT_JOB_STATUS_FAILED:
        meaning.event = JobEvent::kFailed;
        return meaning;
      case exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED:
        meaning.event = JobEvent::kCancelled;
        return meaning;
      case exportjobs::v1::EXPORT_JOB_STATUS_PENDING:
        meaning.event = cause == ChangeCause::kRelease ? JobEvent::kReleased : JobEvent::kRetried;
        return meaning;
      default:
        return meaning;
    }
  }
  switch (cause) {
    case ChangeCause::kProgress:
      meaning.event = JobEvent::kProgress;
      break;
    case ChangeCause::kPartRecorded:
      meaning.event = JobEvent::kPartUploaded;
      break;
    case ChangeCause::kCancel:
      meaning.event = JobEvent::kCancelRequested;
      break;
    case ChangeCause::kFilesExpiry:
      meaning.event = JobEvent::kFilesExpired;
      break;
    default:
      break;
  }
  return meaning;
}

std::string_view EventName(const ChangeMeaning& meaning) {
  if (meaning.lease_expired) return "job.lease_expired";
  switch (meaning.event) {
    case JobEvent::kCreated:
      return "job.created";
    case JobEvent::kClaimed:
      return "job.claimed";
    case JobEvent::kProgress:
      return "job.progress";
    case JobEvent::kPartUploaded:
      return "job.part_uploaded";
    case JobEvent::kCancelRequested:
      return "job.cancel_requested";
    case JobEvent::kCompleted:
      return "job.completed";
    case JobEvent::kFailed:
      return "job.failed";
    case JobEvent::kCancelled:
      return "job.cancelled";
    case JobEvent::kRetried:
      return "job.retried";
    case JobEvent::kReleased:
      return "job.released";
    case JobEvent::kDeleted:
      return "job.deleted";
    case JobEvent::kFilesExpired:
      return "job.files_expired";
    case JobEvent::kUpdated:
      break;
  }
  return "job.updated";
}

}  // namespace exportd
