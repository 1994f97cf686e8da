#include "server/job_events.h"

#include <vector>

#include "common/job_json.h"
#include "common/logging.h"

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

namespace {

std::string EntityName(const JobRecord& record) {
  return std::string(EntityTypeJsonName(record.job().entity_type()));
}

std::string_view OutcomeName(JobEvent event) {
  switch (event) {
    case JobEvent::kRetried:
      return "retried";
    case JobEvent::kFailed:
      return "failed";
    case JobEvent::kCancelled:
      return "cancelled";
    default:
      return "other";
  }
}

}  // namespace

void LogCommit(const CommitReport& report) {
  LogBatch lines;
  for (size_t i = 0; i < report.changes.size(); ++i) {
    const JobChange& change = report.changes[i];
    const ChangeMeaning meaning = Classify(change, report.causes[i]);
    const std::string& note = i < report.notes.size() ? report.notes[i] : std::string();
    LogLevel level = LogLevel::kInfo;
    if (meaning.lease_expired || meaning.event == JobEvent::kFailed) level = LogLevel::kWarn;
    if (meaning.event == JobEvent::kProgress || meaning.event == JobEvent::kPartUploaded ||
        meaning.event == JobEvent::kUpdated) {
      level = LogLevel::kDebug;
    }
    if (!LogEnabled(level)) continue;
    const JobRecord& record = change.after ? *change.after : *change.before;
    const ExportJob& job = record.job();
    std::vector<LogField> fields;
    fields.emplace_back("job_id", job.id());
    fields.emplace_back("revision", job.revision());
    if (meaning.lease_expired) {
      fields.emplace_back("entity_type", EntityName(record));
      fields.emplace_back("worker_id", change.before->lease().worker_id());
      fields.emplace_back("attempt", change.before->job().attempt());
      fields.emplace_back("outcome", std::string(OutcomeName(meaning.event)));
      lines.Add(level, EventName(meaning), fields);
      continue;
    }
    switch (meaning.event) {
      case JobEvent::kCreated:
        fields.emplace_back("entity_type", EntityName(record));
        fields.emplace_back("request_id", job.request_id());
        break;
      case JobEvent::kClaimed:
        fields.emplace_back("entity_type", EntityName(record));
        fields.emplace_back("worker_id", record.lease().worker_id());
        fields.emplace_back("attempt", job.attempt());
        break;
      case JobEvent::kCompleted:
        fields.emplace_back("entity_type", EntityName(record));
        fields.emplace_back("attempt", job.attempt());
        fields.emplace_back("record_count", job.record_count());
        fields.emplace_back("file_parts", job.file_parts());
        fields.emplace_back("file_size_bytes", job.file_size_bytes());
        break;
      case JobEvent::kFailed:
        fields.emplace_back("entity_type", EntityName(record));
        fields.emplace_back("attempt", job.attempt());
        fields.emplace_back("error", job.error_message());
        break;
      case JobEvent::kRetried:
        fields.emplace_back("entity_type", EntityName(record));
        fields.emplace_back("attempt", change.before->job().attempt());
        fields.emplace_back("error", note);
        fields.emplace_back("retry_at", Rfc3339(record.ready_at()));
        break;
      case JobEvent::kCancelled:
      case JobEvent::kCancelRequested:
        fields.emplace_back("entity_type", EntityName(record));
        break;
      case JobEvent::kReleased:
        fields.emplace_back("entity_type", EntityName(record));
        fields.emplace_back("worker_id", change.before->lease().worker_id());
        break;
      case JobEvent::kDeleted:
        fields.emplace_back("reason", meaning.by_janitor ? "retention" : "request");
        break;
      case JobEvent::kProgress:
        fields.emplace_back("records_processed", job.progress().records_processed());
        break;
      case JobEvent::kPartUploaded:
        fields.emplace_back("parts_uploaded", job.progress().parts_uploaded());
        break;
      case JobEvent::kFilesExpired:
      case JobEvent::kUpdated:
        break;
    }
    lines.Add(level, EventName(meaning), fields);
  }
}

}  // namespace exportd
