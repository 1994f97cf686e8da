// exportctl's text: numbers, sizes and durations, aligned tables, the table and JSON forms of
// jobs, lists and fields, and the progress lines of watch and download.

#include "client/exportctl_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/exportctl_progress.h"
#include "common/proto_time.h"
#include "nlohmann/json.hpp"

namespace exportd::exportctl {
namespace {

using exportjobs::v1::ExportJob;
using ::testing::HasSubstr;

bool HasControlCharacters(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) return true;
  }
  return false;
}

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

ExportJob CompletedJob() {
  ExportJob job;
  job.set_id("00066155b681fc4d25936487");
  job.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  job.set_status(exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  job.add_fields("id");
  job.add_fields("name");
  job.set_record_count(3000);
  job.set_file_size_bytes(87330);
  job.set_file_parts(2);
  job.set_download_url("http://127.0.0.1:8080/v1/export-jobs/00066155b681fc4d25936487/file");
  *job.mutable_created_at() = ToProtoTime(kT0);
  *job.mutable_completed_at() = ToProtoTime(kT0 + absl::Seconds(2));
  job.set_revision(9);
  for (int n = 1; n <= 2; ++n) {
    exportjobs::v1::ExportPart* part = job.add_parts();
    part->set_part_number(n);
    part->set_size_bytes(n == 1 ? 50000 : 37330);
    part->set_record_count(1500);
    part->set_sha256(std::string(64, n == 1 ? 'a' : 'b'));
  }
  return job;
}

ExportJob ProcessingJob(int64_t processed, int64_t estimate, absl::Duration running) {
  ExportJob job;
  job.set_id("j");
  job.set_status(exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING);
  job.set_attempt(1);
  job.mutable_progress()->set_records_processed(processed);
  job.mutable_progress()->set_records_total_estimate(estimate);
  job.mutable_progress()->set_parts_uploaded(1);
  *job.mutable_started_at() = ToProtoTime(kT0);
  *job.mutable_updated_at() = ToProtoTime(kT0 + running);
  return job;
}

TEST(FormatTest, Counts) {
  EXPECT_EQ(FormatCount(0), "0");
  EXPECT_EQ(FormatCount(999), "999");
  EXPECT_EQ(FormatCount(1000), "1,000");
  EXPECT_EQ(FormatCount(1234567), "1,234,567");
  EXPECT_EQ(FormatCount(-1234), "-1,234");
  EXPECT_EQ(FormatCount(INT64_MIN), "-9,223,372,036,854,775,808");
}

TEST(FormatTest, Bytes) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(64 << 20), "64.0 MiB");
  EXPECT_EQ(FormatBytes(int64_t{3} << 30), "3.0 GiB");
}

TEST(FormatTest, Durations) {
  EXPECT_EQ(HumanDuration(absl::ZeroDuration()), "0s");
  EXPECT_EQ(HumanDuration(-absl::Seconds(3)), "0s");
  EXPECT_EQ(HumanDuration(absl::Seconds(45)), "45s");
  EXPECT_EQ(HumanDuration(absl::Seconds(65)), "1m05s");
  EXPECT_EQ(HumanDuration(absl::Minutes(123)), "2h03m");
  EXPECT_EQ(HumanDuration(absl::Hours(76)), "3d04h");
}

TEST(FormatTest, PrintableReplacesControlCharacters) {
  EXPECT_EQ(Printable("a\tb\nc\rd"), "a b c d");
  EXPECT_EQ(Printable("bell\a esc\x1b[2J del\x7f"), "bell? esc?[2J del?");
  EXPECT_EQ(Printable("größe"), "größe");
}

TEST(FormatTest, WidthCountsCharactersNotBytes) {
  EXPECT_EQ(DisplayWidth("größe"), 5u);
  EXPECT_EQ(TruncateToWidth("größe", 3), "grö");
  EXPECT_EQ(TruncateToWidth("abc", 10), "abc");
  EXPECT_EQ(TruncateToWidth("abc", 0), "");
}

TEST(RenderTableTest, AlignsColumnsAndNeverPadsTheLast) {
  EXPECT_EQ(RenderTable({"NAME", "TYPE", "NOTE"}, {{"id", "integer", "x"}, {"größe", "", ""}}),
            "NAME   TYPE     NOTE\n"
            "id     integer  x\n"
            "größe\n");
}

TEST(RenderTableTest, CellsCannotBreakTheTable) {
  EXPECT_EQ(RenderTable({"A", "B"}, {{"x\ny", "z"}}),
            "A    B\n"
            "x y  z\n");
}

TEST(RenderJobTest, TableOfACompletedJob) {
  const std::string table = RenderJobTable(CompletedJob());
  EXPECT_THAT(table, HasSubstr("id            00066155b681fc4d25936487\n"));
  EXPECT_THAT(table, HasSubstr("status        completed\n"));
  EXPECT_THAT(table, HasSubstr("fields        id,name\n"));
  EXPECT_THAT(table, HasSubstr("records       3,000\n"));
  EXPECT_THAT(table, HasSubstr("file          87,330 bytes (85.3 KiB) in 2 parts\n"));
  EXPECT_THAT(table, HasSubstr("created       2027-01-15T08:00:00Z\n"));
  EXPECT_THAT(table, HasSubstr("download url  http://127.0.0.1:8080/"));
  EXPECT_THAT(table, HasSubstr("PART  BYTES   RECORDS  SHA-256\n"
                               "1     50,000  1,500    " +
                               std::string(64, 'a') + "\n"));
  std::string without_newlines = table;
  std::erase(without_newlines, '\n');
  EXPECT_FALSE(HasControlCharacters(without_newlines));
}

TEST(RenderJobTest, ListTable) {
  ExportJob pending;
  pending.set_id("00066155b681fc4d25936488");
  pending.set_entity_type(exportjobs::v1::ENTITY_TYPE_PEOPLE);
  pending.set_status(exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  *pending.mutable_created_at() = ToProtoTime(kT0 + absl::Milliseconds(250));
  EXPECT_EQ(RenderJobListTable({pending, CompletedJob()}),
            "ID                        ENTITY    STATUS     RECORDS  SIZE      CREATED\n"
            "00066155b681fc4d25936488  people    pending    -        -         "
            "2027-01-15T08:00:00.25Z\n"
            "00066155b681fc4d25936487  accounts  completed  3,000    85.3 KiB  "
            "2027-01-15T08:00:00Z\n");
  EXPECT_EQ(RenderJobListTable({}), "no jobs\n");
}

TEST(RenderJobTest, ListJsonIsOneObjectOfJobsInTheSchemaForm) {
  const nlohmann::json json =
      nlohmann::json::parse(RenderJobListJson({CompletedJob()}, "next-token"));
  ASSERT_TRUE(json["export_jobs"].is_array());
  ASSERT_EQ(json["export_jobs"].size(), 1u);
  EXPECT_EQ(json["export_jobs"][0]["id"], "00066155b681fc4d25936487");
  EXPECT_EQ(json["export_jobs"][0]["entity_type"], "accounts");
  EXPECT_EQ(json["export_jobs"][0]["record_count"], 3000);
  EXPECT_FALSE(json["export_jobs"][0].contains("revision"));
  EXPECT_EQ(json["next_page_token"], "next-token");
  EXPECT_EQ(RenderJobListJson({}, ""), R"({"export_jobs":[]})");
}

TEST(RenderFieldsTest, TableAndJson) {
  std::vector<exportjobs::v1::ExportableField> fields(2);
  fields[0].set_name("id");
  fields[0].set_type(exportjobs::v1::FIELD_TYPE_INTEGER);
  fields[0].set_default_(true);
  fields[0].set_description("Account id");
  fields[1].set_name("annual_revenue");
  fields[1].set_type(exportjobs::v1::FIELD_TYPE_NUMBER);
  fields[1].set_description("Revenue in USD");
  EXPECT_EQ(RenderFieldsTable(fields),
            "NAME            TYPE     DEFAULT  DESCRIPTION\n"
            "id              integer  yes      Account id\n"
            "annual_revenue  number            Revenue in USD\n");
  EXPECT_EQ(RenderFieldsJson(exportjobs::v1::ENTITY_TYPE_ACCOUNTS, fields),
            R"({"entity_type":"accounts","fields":[)"
            R"({"name":"id","type":"integer","default":true,"description":"Account id"},)"
            R"({"name":"annual_revenue","type":"number","default":false,)"
            R"("description":"Revenue in USD"}]})");
}

TEST(JobProgressTextTest, ProcessingWithEstimateRateAndEta) {
  // 1,200 of 5,000 records in 4 s: 300/s, 3,800 left: 12.67 s -> 13 s.
  EXPECT_EQ(JobProgressText(ProcessingJob(1200, 5000, absl::Seconds(4))),
            "processing  records 1,200 / 5,000 (24.0%)  parts 1  rate 300/s  ETA 13s");
}

TEST(JobProgressTextTest, ProcessingWithoutEstimateOrTime) {
  EXPECT_EQ(JobProgressText(ProcessingJob(1200, 0, absl::Seconds(4))),
            "processing  records 1,200  parts 1  rate 300/s");
  EXPECT_EQ(JobProgressText(ProcessingJob(0, 0, absl::ZeroDuration())),
            "processing  records 0  parts 1");
}

TEST(JobProgressTextTest, EstimatesBelowTheCountCapAtAHundredPercent) {
  EXPECT_EQ(JobProgressText(ProcessingJob(6000, 5000, absl::Seconds(2))),
            "processing  records 6,000 / 5,000 (100.0%)  parts 1  rate 3,000/s");
}

TEST(JobProgressTextTest, CancelRequestedAndRetries) {
  ExportJob job = ProcessingJob(10, 0, absl::Seconds(1));
  job.set_cancel_requested(true);
  job.set_attempt(2);
  EXPECT_EQ(JobProgressText(job),
            "processing (cancel requested)  records 10  parts 1  rate 10/s  attempt 2");
  ExportJob pending;
  pending.set_status(exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  EXPECT_EQ(JobProgressText(pending), "pending");
  pending.set_attempt(1);
  EXPECT_EQ(JobProgressText(pending), "pending (will retry; attempts so far 1)");
}

TEST(JobProgressTextTest, TerminalStates) {
  EXPECT_EQ(JobProgressText(CompletedJob()), "completed  records 3,000  parts 2  85.3 KiB");
  ExportJob failed;
  failed.set_status(exportjobs::v1::EXPORT_JOB_STATUS_FAILED);
  failed.set_error_message("lease expired;\n3 attempts\x1b[2J");
  EXPECT_EQ(JobProgressText(failed), "failed: lease expired; 3 attempts?[2J");
  ExportJob cancelled;
  cancelled.set_status(exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  EXPECT_EQ(JobProgressText(cancelled), "cancelled");
}

TEST(LiveLineTest, RedrawsInPlaceWithinTheWidth) {
  EXPECT_EQ(LiveLine("processing  records 1", 80), "\rprocessing  records 1\x1b[K");
  // One column is left free: a full line would wrap and break the next redraw.
  EXPECT_EQ(LiveLine("0123456789", 8), "\r0123456\x1b[K");
  EXPECT_EQ(LiveLine("a\nb\x1b", 80), "\ra b?\x1b[K");
}

TEST(PlainLineFilterTest, SkipsRepeats) {
  PlainLineFilter filter;
  EXPECT_TRUE(filter.ShouldPrint("pending"));
  EXPECT_FALSE(filter.ShouldPrint("pending"));
  EXPECT_TRUE(filter.ShouldPrint("processing"));
  EXPECT_TRUE(filter.ShouldPrint("pending"));
}

TEST(DownloadProgressTest, TextAndRate) {
  const TransferMeter meter(1000, kT0);
  EXPECT_EQ(meter.Rate(5000, kT0 + absl::Milliseconds(100)), std::nullopt);
  ASSERT_EQ(meter.Rate(1000 + 2048, kT0 + absl::Seconds(2)), 1024.0);
  EXPECT_EQ(DownloadProgressText("out.csv", 1 << 20, 4 << 20, std::nullopt),
            "out.csv  1.0 MiB / 4.0 MiB (25.0%)");
  EXPECT_EQ(DownloadProgressText("out.csv", 1 << 20, 4 << 20, double{1 << 20}),
            "out.csv  1.0 MiB / 4.0 MiB (25.0%)  1.0 MiB/s  ETA 3s");
}

}  // namespace
}  // namespace exportd::exportctl
