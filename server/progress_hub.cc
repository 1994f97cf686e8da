#include "server/progress_hub.h"

#include <algorithm>
#include <utility>

namespace exportd {

ProgressHub::Targets& ProgressHub::Own(TargetList& list) {
  if (list == nullptr) {
    list = std::make_shared<Targets>();
  } else if (deliveries_ > 0) {
    list = std::make_shared<Targets>(*list);
  }
  return *list;
}

bool ProgressHub::Add(const std::string& id, std::shared_ptr<WatchTarget> target) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return false;
  Own(id.empty() ? all_jobs_ : by_job_[id]).push_back(std::move(target));
  ++count_;
  return true;
}

void ProgressHub::Remove(const std::string& id, const WatchTarget* target) {
  absl::MutexLock lock(&mu_);
  TargetList* list = &all_jobs_;
  if (!id.empty()) {
    auto it = by_job_.find(id);
    if (it == by_job_.end()) return;
    list = &it->second;
  }
  if (!*list) return;
  const auto found = std::find_if((*list)->begin(), (*list)->end(),
                                  [target](const auto& t) { return t.get() == target; });
  if (found == (*list)->end()) return;
  const auto index = found - (*list)->begin();
  Targets& targets = Own(*list);
  targets.erase(targets.begin() + index);
  --count_;
  if (targets.empty() && !id.empty()) by_job_.erase(id);
}

void ProgressHub::Publish(const JobChange& change) {
  absl::MutexLock throttle_lock(&throttle_mu_);
  const JobRecord& record = change.after ? *change.after : *change.before;
  const std::string& id = record.job().id();
  const bool processing =
      change.after && change.after->job().status() == exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING;
  const bool progress_report =
      processing && change.before && change.before->job().status() == change.after->job().status();
  if (!processing) {
    throttles_.erase(id);  // A held report is older than this change: dropped.
    // Without a watcher of this job or of all jobs the event is not even built (a watcher that
    // registers later starts from the stored state, which has this change already).
    absl::MutexLock lock(&mu_);
    if (!by_job_.contains(id) && (all_jobs_ == nullptr || all_jobs_->empty())) return;
  }
  auto event = std::make_shared<ExportJobEvent>();
  *event->mutable_job() = record.job();
  event->set_revision(record.job().revision());
  event->set_kind(change.after ? ExportJobEvent::KIND_CHANGED : ExportJobEvent::KIND_DELETED);
  if (processing && progress_interval_ > absl::ZeroDuration()) {
    const absl::Time now = absl::Now();
    Throttle& throttle = throttles_[id];
    if (progress_report && now < throttle.last_delivered + progress_interval_) {
      throttle.held = std::move(event);
      throttle.tenant = record.tenant();
      return;
    }
    throttle.last_delivered = now;
    throttle.held.reset();
  }
  Deliver(event, record.tenant());
}

void ProgressHub::Flush() {
  absl::MutexLock throttle_lock(&throttle_mu_);
  const absl::Time now = absl::Now();
  for (auto& [id, throttle] : throttles_) {
    if (throttle.held && now >= throttle.last_delivered + progress_interval_) {
      throttle.last_delivered = now;
      Deliver(std::exchange(throttle.held, nullptr), throttle.tenant);
    }
  }
}

void ProgressHub::Deliver(const EventPtr& shared, const std::string& tenant) {
  std::shared_ptr<const Targets> job_targets;
  std::shared_ptr<const Targets> all_targets;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = by_job_.find(shared->job().id()); it != by_job_.end()) job_targets = it->second;
    all_targets = all_jobs_;
    ++deliveries_;
  }
  if (job_targets) {
    for (const auto& t : *job_targets) t->Deliver(shared, tenant);
  }
  if (all_targets) {
    for (const auto& t : *all_targets) t->Deliver(shared, tenant);
  }
  job_targets.reset();
  all_targets.reset();
  absl::MutexLock lock(&mu_);
  --deliveries_;
}

void ProgressHub::Shutdown() {
  absl::MutexLock throttle_lock(&throttle_mu_);
  // Watchers end with the latest state: the reports held back go out first.
  for (auto& [id, throttle] : throttles_) {
    if (throttle.held) Deliver(std::exchange(throttle.held, nullptr), throttle.tenant);
  }
  std::vector<std::shared_ptr<const Targets>> lists;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    for (const auto& [id, list] : by_job_) lists.push_back(list);
    lists.push_back(all_jobs_);
    ++deliveries_;
  }
  for (const auto& list : lists) {
    if (!list) continue;
    for (const auto& t : *list) t->ServerShutdown();
  }
  lists.clear();
  absl::MutexLock lock(&mu_);
  --deliveries_;
}

size_t ProgressHub::watcher_count() const {
  absl::MutexLock lock(&mu_);
  return count_;
}

}  // namespace exportd

namespace exportd {

bool ProgressHub::AwaitNoWatchers(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(
                                   +[](const size_t* count) { return *count == 0; }, &count_),
                               deadline);
}

}  // namespace exportd
