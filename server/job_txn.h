// JobManager::Txn: the state one group of requests sees on the committer thread: what is
// stored, plus the changes staged earlier in the same group. Private to the JobManager.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "server/job_manager.h"

namespace exportd {
namespace job_internal {

inline absl::Status JobNotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
}

inline std::string StatusWord(ExportJobStatus status) {
  std::string name = ExportJobStatus_Name(status);
  constexpr std::string_view kPrefix = "EXPORT_JOB_STATUS_";
  if (name.rfind(kPrefix, 0) == 0) name = name.substr(kPrefix.size());
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

// The record after one more change: revision + 1, updated_at = now.
inline JobRecord NextRevision(const JobRecord& before, absl::Time now) {
  JobRecord after = before;
  after.mutable_job()->set_revision(before.job().revision() + 1);
  *after.mutable_job()->mutable_updated_at() = ToProtoTime(now);
  return after;
}

}  // namespace job_internal

class JobManager::Txn {
 public:
  Txn(JobStore* store, absl::Time now) : store_(store), now_(now) {}

  absl::Time now() const { return now_; }

  // The job as it will be after the changes staged so far; nullopt when it does not exist.
  absl::StatusOr<std::optional<JobRecord>> Read(const std::string& id) {
    if (auto it = overlay_.find(id); it != overlay_.end()) return changes_[it->second].after;
    absl::StatusOr<JobRecord> record = store_->Get(id);
    if (absl::IsNotFound(record.status())) return std::nullopt;
    if (!record.ok()) return record.status();
    return std::optional<JobRecord>(*std::move(record));
  }

  // True when a change to the job was staged earlier in the group.
  bool Staged(const std::string& id) const { return overlay_.contains(id); }

  absl::StatusOr<std::optional<std::string>> FindByRequestId(const std::string& tenant,
                                                             const std::string& request_id) {
    if (auto it = request_ids_.find(RequestKey(tenant, request_id)); it != request_ids_.end()) {
      return it->second;
    }
    return store_->FindByRequestId(tenant, request_id);
  }

  // `note` says more about the change than the records do (e.g. the worker's error message of a
  // failure that is retried); it goes to the commit report.
  void Stage(JobChange change, ChangeCause cause, std::string note = "") {
    const JobRecord& any = change.after ? *change.after : *change.before;
    const std::string& request_id = any.job().request_id();
    if (!request_id.empty() && (!change.before || !change.after)) {
      request_ids_[RequestKey(any.tenant(), request_id)] =
          change.after ? std::optional<std::string>(any.job().id()) : std::nullopt;
    }
    overlay_[any.job().id()] = changes_.size();
    changes_.push_back(std::move(change));
    causes_.push_back(cause);
    notes_.push_back(std::move(note));
  }

  std::vector<JobChange>& changes() { return changes_; }
  // causes()[i] is why changes()[i] was staged.
  const std::vector<ChangeCause>& causes() const { return causes_; }
  const std::vector<std::string>& notes() const { return notes_; }
  std::vector<ChangeCause> TakeCauses() { return std::move(causes_); }
  std::vector<std::string> TakeNotes() { return std::move(notes_); }

  // Parts to delete once the group is written: (job id, epoch; -1 for all).
  void Discard(const std::string& id, int64_t epoch) { discards_.emplace_back(id, epoch); }
  const std::vector<std::pair<std::string, int64_t>>& discards() const { return discards_; }

  static std::string RequestKey(const std::string& tenant, const std::string& request_id) {
    return absl::StrCat(tenant, std::string(1, '\0'), request_id);
  }

 private:
  JobStore* const store_;
  const absl::Time now_;
  // The index in changes_ of each staged job's last change (its record after the group so far):
  // staged records are not copied.
  absl::flat_hash_map<std::string, size_t> overlay_;
  absl::flat_hash_map<std::string, std::optional<std::string>> request_ids_;
  std::vector<JobChange> changes_;
  std::vector<ChangeCause> causes_;
  std::vector<std::string> notes_;
  std::vector<std::pair<std::string, int64_t>> discards_;
};

template <typename T>
JobManager::Op JobManager::MakeOp(absl::AnyInvocable<absl::StatusOr<T>(Txn&)> apply,
                                  absl::AnyInvocable<void(absl::StatusOr<T>) &&> done) {
  auto result = std::make_shared<absl::StatusOr<T>>(absl::UnknownError("not applied"));
  return Op{[apply = std::move(apply), result](Txn& txn) mutable { *result = apply(txn); },
            [result, done = std::move(done)](const absl::Status& written) mutable {
              if (!written.ok()) return std::move(done)(written);
              std::move(done)(std::move(*result));
            }};
}

}  // namespace exportd
