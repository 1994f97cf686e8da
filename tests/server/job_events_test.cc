// What each kind of committed change means (server/job_events.h): the events that metrics count
// and the log writes.
#include "server/job_events.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace exportd::testing {
namespace {

using exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED;
using exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED;
using exportjobs::v1::EXPORT_JOB_STATUS_FAILED;
using exportjobs::v1::EXPORT_JOB_STATUS_PENDING;
using exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING;

std::optional<JobRecord> Record(ExportJobStatus status) {
  JobRecord record;
  record.mutable_job()->set_id("0123456789abcdef01234567");
  record.mutable_job()->set_status(status);
  return record;
}

std::string Describe(std::optional<ExportJobStatus> before, std::optional<ExportJobStatus> after,
                     ChangeCause cause) {
  JobChange change;
  if (before) change.before = Record(*before);
  if (after) change.after = Record(*after);
  const ChangeMeaning meaning = Classify(change, cause);
  std::string out(EventName(meaning));
  if (meaning.by_janitor) out += " by janitor";
  if (meaning.lease_expired) {
    out += meaning.event == JobEvent::kRetried     ? " retried"
           : meaning.event == JobEvent::kFailed    ? " failed"
           : meaning.event == JobEvent::kCancelled ? " cancelled"
                                                   : " ?";
  }
  return out;
}

TEST(JobEventsTest, EachChangeHasItsEvent) {
  EXPECT_EQ(Describe(std::nullopt, EXPORT_JOB_STATUS_PENDING, ChangeCause::kCreate), "job.created");
  EXPECT_EQ(Describe(EXPORT_JOB_STATUS_PENDING, EXPORT_JOB_STATUS_CANCELLED, ChangeCause::kCancel),
            "job.cancelled");
  EXPECT_EQ(
      Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_PROCESSING, ChangeCause::kCancel),
      "job.cancel_requested");
  EXPECT_EQ(Describe(EXPORT_JOB_STATUS_PENDING, EXPORT_JOB_STATUS_PROCESSING, ChangeCause::kClaim),
            "job.claimed");
  EXPECT_EQ(
      Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_PROCESSING, ChangeCause::kProgress),
      "job.progress");
  EXPECT_EQ(Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_PROCESSING,
                     ChangeCause::kPartRecorded),
            "job.part_uploaded");
  EXPECT_EQ(
      Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_COMPLETED, ChangeCause::kComplete),
      "job.completed");
  EXPECT_EQ(Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_PENDING, ChangeCause::kFail),
            "job.retried");
  EXPECT_EQ(Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_FAILED, ChangeCause::kFail),
            "job.failed");
  EXPECT_EQ(Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_CANCELLED, ChangeCause::kFail),
            "job.cancelled");
  EXPECT_EQ(
      Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_PENDING, ChangeCause::kRelease),
      "job.released");
  EXPECT_EQ(
      Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_CANCELLED, ChangeCause::kRelease),
      "job.cancelled");
  EXPECT_EQ(
      Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_PENDING, ChangeCause::kLeaseExpiry),
      "job.lease_expired retried");
  EXPECT_EQ(
      Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_FAILED, ChangeCause::kLeaseExpiry),
      "job.lease_expired failed");
  EXPECT_EQ(Describe(EXPORT_JOB_STATUS_PROCESSING, EXPORT_JOB_STATUS_CANCELLED,
                     ChangeCause::kLeaseExpiry),
            "job.lease_expired cancelled");
  EXPECT_EQ(Describe(EXPORT_JOB_STATUS_COMPLETED, std::nullopt, ChangeCause::kDelete),
            "job.deleted");
  EXPECT_EQ(Describe(EXPORT_JOB_STATUS_COMPLETED, std::nullopt, ChangeCause::kRetention),
            "job.deleted by janitor");
  EXPECT_EQ(
      Describe(EXPORT_JOB_STATUS_COMPLETED, EXPORT_JOB_STATUS_COMPLETED, ChangeCause::kFilesExpiry),
      "job.files_expired");
  EXPECT_EQ(Describe(EXPORT_JOB_STATUS_PENDING, EXPORT_JOB_STATUS_PENDING, ChangeCause::kUpdate),
            "job.updated");
}

}  // namespace
}  // namespace exportd::testing
