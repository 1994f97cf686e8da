#include "client/exportctl_progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "client/exportctl_format.h"
#include "common/proto_time.h"
#include "common/str_cat.h"

namespace exportd::exportctl {
namespace {

using exportjobs::v1::ExportJob;

std::string Percent(double fraction) {
  char buffer[16];
  std::snprintf(buffer, sizeof(buffer), "%.1f%%", std::clamp(fraction, 0.0, 1.0) * 100.0);
  return buffer;
}

// The ETA of `remaining` units at `rate` units per second.
std::string Eta(double remaining, double rate) {
  if (rate <= 0 || remaining <= 0) return "";
  const double seconds = std::ceil(remaining / rate);
  if (seconds > 1e9) return "";
  return Cat("ETA ", HumanDuration(absl::Seconds(seconds)));
}

}  // namespace

std::optional<double> JobRecordRate(const ExportJob& job) {
  if (job.status() != exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING || !job.has_started_at() ||
      !job.has_updated_at() || job.progress().records_processed() <= 0) {
    return std::nullopt;
  }
  const absl::Duration elapsed = FromProtoTime(job.updated_at()) - FromProtoTime(job.started_at());
  if (elapsed <= absl::ZeroDuration()) return std::nullopt;
  return static_cast<double>(job.progress().records_processed()) / absl::ToDoubleSeconds(elapsed);
}

std::string JobProgressText(const ExportJob& job) {
  std::string text;
  switch (job.status()) {
    case exportjobs::v1::EXPORT_JOB_STATUS_PENDING:
      text = "pending";
      if (job.attempt() > 0) Append(&text, " (will retry; attempts so far ", job.attempt(), ")");
      return text;
    case exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING: {
      const exportjobs::v1::ExportProgress& progress = job.progress();
      text = "processing";
      if (job.cancel_requested()) text += " (cancel requested)";
      Append(&text, "  records ", FormatCount(progress.records_processed()));
      const int64_t estimate = progress.records_total_estimate();
      if (estimate > 0) {
        Append(&text, " / ", FormatCount(estimate), " (",
               Percent(static_cast<double>(progress.records_processed()) /
                       static_cast<double>(estimate)),
               ")");
      }
      Append(&text, "  parts ", progress.parts_uploaded());
      if (std::optional<double> rate = JobRecordRate(job)) {
        Append(&text, "  rate ", FormatCount(static_cast<int64_t>(std::llround(*rate))), "/s");
        const std::string eta =
            Eta(static_cast<double>(estimate - progress.records_processed()), *rate);
        if (estimate > 0 && !eta.empty()) Append(&text, "  ", eta);
      }
      if (job.attempt() > 1) Append(&text, "  attempt ", job.attempt());
      return text;
    }
    case exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED:
      return Cat("completed  records ", FormatCount(job.record_count()), "  parts ",
                 job.file_parts(), "  ", FormatBytes(job.file_size_bytes()));
    case exportjobs::v1::EXPORT_JOB_STATUS_FAILED:
      return Cat("failed: ", Printable(job.error_message()));
    case exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED:
      return "cancelled";
    default:
      return "unknown status";
  }
}

std::string LiveLine(std::string_view text, int width) {
  const size_t room = width > 1 ? static_cast<size_t>(width - 1) : 0;
  return Cat("\r", TruncateToWidth(Printable(text), room), "\x1b[K");
}

bool PlainLineFilter::ShouldPrint(const std::string& line) {
  if (last_.has_value() && *last_ == line) return false;
  last_ = line;
  return true;
}

std::optional<double> TransferMeter::Rate(int64_t done_bytes, absl::Time now) const {
  const absl::Duration elapsed = now - start_;
  if (elapsed < absl::Milliseconds(200)) return std::nullopt;
  return static_cast<double>(done_bytes - start_bytes_) / absl::ToDoubleSeconds(elapsed);
}

std::string DownloadProgressText(std::string_view name, int64_t done_bytes, int64_t total_bytes,
                                 std::optional<double> rate) {
  std::string text = Cat(name, "  ", FormatBytes(done_bytes), " / ", FormatBytes(total_bytes));
  if (total_bytes > 0) {
    Append(&text, " (", Percent(static_cast<double>(done_bytes) / static_cast<double>(total_bytes)),
           ")");
  }
  if (rate.has_value()) {
    Append(&text, "  ", FormatBytes(static_cast<int64_t>(std::llround(*rate))), "/s");
    const std::string eta = Eta(static_cast<double>(total_bytes - done_bytes), *rate);
    if (!eta.empty()) Append(&text, "  ", eta);
  }
  return text;
}

}  // namespace exportd::exportctl
