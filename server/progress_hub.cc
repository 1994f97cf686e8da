#include "server/progress_hub.h"

#include <algorithm>

namespace exportd {

bool ProgressHub::Add(const std::string& id, std::shared_ptr<WatchTarget> target) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return false;
  TargetList& list = id.empty() ? all_jobs_ : by_job_[id];
  auto grown = list ? std::make_shared<Targets>(*list) : std::make_shared<Targets>();
  grown->push_back(std::move(target));
  list = std::move(grown);
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
  auto shrunk = std::make_shared<Targets>();
  shrunk->reserve((*list)->size());
  for (const auto& t : **list) {
    if (t.get() != target) shrunk->push_back(t);
  }
  if (shrunk->size() == (*list)->size()) return;
  --count_;
  if (shrunk->empty() && !id.empty()) {
    by_job_.erase(id);
  } else {
    *list = std::move(shrunk);
  }
}

void ProgressHub::Publish(const JobChange& change) {
  auto event = std::make_shared<ExportJobEvent>();
  const JobRecord& record = change.after ? *change.after : *change.before;
  *event->mutable_job() = record.job();
  event->set_revision(record.job().revision());
  event->set_kind(change.after ? ExportJobEvent::KIND_CHANGED : ExportJobEvent::KIND_DELETED);

  TargetList job_targets;
  TargetList all_targets;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = by_job_.find(record.job().id()); it != by_job_.end()) job_targets = it->second;
    all_targets = all_jobs_;
  }
  const EventPtr shared = std::move(event);
  if (job_targets) {
    for (const auto& t : *job_targets) t->Deliver(shared, record.tenant());
  }
  if (all_targets) {
    for (const auto& t : *all_targets) t->Deliver(shared, record.tenant());
  }
}

void ProgressHub::Shutdown() {
  std::vector<TargetList> lists;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    for (const auto& [id, list] : by_job_) lists.push_back(list);
    lists.push_back(all_jobs_);
  }
  for (const TargetList& list : lists) {
    if (!list) continue;
    for (const auto& t : *list) t->ServerShutdown();
  }
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
