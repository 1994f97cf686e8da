#include "server/watch_reactor.h"

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/grpc_status.h"
#include "server/job_manager.h"
#include "server/tenancy.h"
#include "server/watch_queue.h"

namespace exportd {
namespace {

using exportjobs::v1::ExportJobEvent;

class Reactor;

// The state of one watch, shared by the hub (which delivers to it) and the reactor (which
// writes from it). Outlives the reactor while the hub still holds it; after the stream
// finished it ignores deliveries.
class WatchStream final : public WatchTarget {
 public:
  struct Config {
    std::string job_id;  // Empty: all jobs.
    std::string tenant;
    ExportJobStatus status_filter = exportjobs::v1::EXPORT_JOB_STATUS_UNSPECIFIED;
    EntityType entity_filter = exportjobs::v1::ENTITY_TYPE_UNSPECIFIED;
    WatchLimits limits;
  };

  // What to do after the lock is released: at most one write and at most one finish.
  struct Action {
    EventPtr write;
    std::optional<grpc::Status> finish;
  };

  WatchStream(Config config, Reactor* reactor) : config_(std::move(config)), reactor_(reactor) {}

  const std::string& job_id() const { return config_.job_id; }

  void Deliver(const EventPtr& event, const std::string& tenant) override {
    if (!InTenantScope(config_.tenant, tenant) || !Matches(event->job())) return;
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (!initialized_ && !config_.job_id.empty()) {
        pre_init_ = event;  // Only the newest matters; Init sends it after the snapshot.
        return;
      }
      EnqueueLocked(event);  // A watch of all jobs queues from registration on.
      action = NextLocked();
    }
    Run(action);
  }

  void ServerShutdown() override {
    EndWith(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                         "server is shutting down; watch again to resume"),
            /*drop_queued=*/false);
  }

  // Ends the stream with `status`, after what is queued unless `drop_queued`.
  void EndWith(const grpc::Status& status, bool drop_queued) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (!pending_finish_) pending_finish_ = status;
      if (drop_queued) ClearLocked();
      initialized_ = true;
      action = NextLocked();
    }
    Run(action);
  }

  // Starts writing a watch of all jobs (after its initial metadata was started).
  void Activate() { Init(std::vector<EventPtr>{}, /*terminal=*/false); }

  // The result of the initial read of a job watch: the events to send first, and whether the
  // job is terminal (then the stream ends after them).
  void Init(absl::StatusOr<std::vector<EventPtr>> initial, bool terminal) {
    if (!initial.ok()) return EndWith(ToGrpcStatus(initial.status()), /*drop_queued=*/true);
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      initialized_ = true;
      for (const EventPtr& event : *initial) EnqueueLocked(event);
      if (terminal) end_after_queue_ = true;
      if (pre_init_) EnqueueLocked(pre_init_);
      pre_init_.reset();
      action = NextLocked();
    }
    Run(action);
  }

  void OnWriteDone(bool ok) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      in_flight_.reset();
      if (!ok) {  // The stream is broken (cancelled or the client went away).
        ClearLocked();
        if (!pending_finish_) pending_finish_ = grpc::Status::CANCELLED;
      }
      action = NextLocked();
    }
    Run(action);
  }

  void OnCancel() { EndWith(grpc::Status::CANCELLED, /*drop_queued=*/true); }

 private:
  bool Matches(const exportjobs::v1::ExportJob& job) const {
    if (!config_.job_id.empty()) return job.id() == config_.job_id;
    return (config_.status_filter == exportjobs::v1::EXPORT_JOB_STATUS_UNSPECIFIED ||
            job.status() == config_.status_filter) &&
           (config_.entity_filter == exportjobs::v1::ENTITY_TYPE_UNSPECIFIED ||
            job.entity_type() == config_.entity_filter);
  }

  void EnqueueLocked(const EventPtr& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (pending_finish_ || end_after_queue_) return;
    if (config_.job_id.empty()) {
      EventPtr& slot = latest_[event->job().id()];
      if (!slot) {
        if (latest_.size() > config_.limits.max_queued_jobs) {
          ClearLocked();
          pending_finish_ = grpc::Status(
              grpc::StatusCode::RESOURCE_EXHAUSTED,
              absl::StrCat("watcher fell behind by more than ", config_.limits.max_queued_jobs,
                           " jobs; watch again and reconcile with ListExportJobs"));
          return;
        }
        order_.push_back(event->job().id());
      }
      slot = event;
      return;
    }
    if (event->revision() <= last_revision_) return;
    if (queue_.size() >= config_.limits.max_queued_events) {
      queue_.back() = event;  // Coalesce: the newest replaces the newest queued.
    } else {
      queue_.push_back(event);
    }
    last_revision_ = event->revision();
    if (IsTerminal(event->job().status()) || event->kind() == ExportJobEvent::KIND_DELETED) {
      end_after_queue_ = true;
    }
  }

  void ClearLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queue_.clear();
    order_.clear();
    latest_ = {};  // clear() would keep the table.
  }

  EventPtr PopLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EventPtr event;
    if (!queue_.empty()) {
      event = queue_.pop_front();
    } else if (!order_.empty()) {
      auto it = latest_.find(order_.pop_front());
      event = std::move(it->second);
      latest_.erase(it);
      if (order_.empty()) latest_ = {};  // Frees the table, as the queues free theirs.
    }
    return event;
  }

  Action NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Action action;
    if (finished_ || in_flight_ || !initialized_) return action;
    if (EventPtr next = PopLocked()) {
      in_flight_ = std::move(next);
      action.write = in_flight_;
      return action;
    }
    if (pending_finish_ || end_after_queue_) {
      finished_ = true;
      action.finish = pending_finish_.value_or(grpc::Status::OK);
    }
    return action;
  }

  void Run(const Action& action);

  const Config config_;
  // Valid until the stream is finished: the reactor is deleted only after Finish.
  Reactor* const reactor_;

  absl::Mutex mu_;
  bool initialized_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool end_after_queue_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> pending_finish_ ABSL_GUARDED_BY(mu_);
  EventPtr in_flight_ ABSL_GUARDED_BY(mu_);
  EventPtr pre_init_ ABSL_GUARDED_BY(mu_);
  int64_t last_revision_ ABSL_GUARDED_BY(mu_) = 0;
  // Idle streams hold no memory for their queues (see WatchQueue).
  // One job: events in revision order.
  WatchQueue<EventPtr> queue_ ABSL_GUARDED_BY(mu_);
  // All jobs: job ids in order of their first undelivered change, and each one's newest event.
  WatchQueue<std::string> order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, EventPtr> latest_ ABSL_GUARDED_BY(mu_);
};

class Reactor final : public grpc::ServerWriteReactor<ExportJobEvent> {
 public:
  Reactor(ProgressHub* hub, WatchStream::Config config, std::shared_ptr<void> slot)
      : hub_(hub),
        stream_(std::make_shared<WatchStream>(std::move(config), this)),
        slot_(std::move(slot)) {}

  // Registers with the hub; ends the stream when the hub refuses.
  bool Register() {
    if (hub_->Add(stream_->job_id(), stream_)) {
      registered_ = true;
      return true;
    }
    stream_->EndWith(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"),
                     /*drop_queued=*/true);
    return false;
  }

  const std::shared_ptr<WatchStream>& stream() { return stream_; }

  void OnWriteDone(bool ok) override { stream_->OnWriteDone(ok); }
  void OnCancel() override { stream_->OnCancel(); }
  void OnDone() override {
    if (registered_) hub_->Remove(stream_->job_id(), stream_.get());
    delete this;
  }

 private:
  ProgressHub* const hub_;
  const std::shared_ptr<WatchStream> stream_;
  // The stream's watcher slot, given back when the reactor is deleted.
  const std::shared_ptr<void> slot_;
  bool registered_ = false;
};

void WatchStream::Run(const Action& action) {
  if (action.write) reactor_->StartWrite(action.write.get());
  if (action.finish) reactor_->Finish(*action.finish);
}

EventPtr MakeEvent(const exportjobs::v1::ExportJob& job, ExportJobEvent::Kind kind) {
  auto event = std::make_shared<ExportJobEvent>();
  *event->mutable_job() = job;
  event->set_revision(job.revision());
  event->set_kind(kind);
  return event;
}

// Reads what a job watch sends first. Runs on a read executor thread.
absl::StatusOr<std::vector<EventPtr>> InitialEvents(
    const JobStore& store, const WatchLimits& limits, const std::string& tenant,
    const exportjobs::v1::WatchExportJobRequest& request, bool* terminal) {
  const std::string& id = request.id();
  absl::StatusOr<JobRecord> record = store.Get(id);
  if ((record.ok() && !InTenantScope(tenant, record->tenant())) ||
      absl::IsNotFound(record.status())) {
    return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  }
  if (!record.ok()) return record.status();
  const exportjobs::v1::ExportJob& job = record->job();
  *terminal = IsTerminal(job.status());
  const int64_t since = request.since_revision();
  if (since == 0) return std::vector<EventPtr>{MakeEvent(job, ExportJobEvent::KIND_SNAPSHOT)};
  if (since > job.revision()) {
    return absl::OutOfRangeError(absl::StrCat("since_revision: ", since, " is ahead of job ", id,
                                              "'s revision ", job.revision()));
  }
  std::vector<EventPtr> events;
  if (since == job.revision()) return events;
  absl::StatusOr<std::vector<exportjobs::v1::ExportJob>> stored =
      store.ReadEvents(id, since, limits.max_replay_events);
  if (!stored.ok()) return stored.status();
  if (stored->empty() || stored->front().revision() != since + 1) {
    // The history after `since` is gone: resume from the current snapshot.
    events.push_back(MakeEvent(job, ExportJobEvent::KIND_SNAPSHOT));
    return events;
  }
  for (const auto& snapshot : *stored) {
    events.push_back(MakeEvent(snapshot, ExportJobEvent::KIND_CHANGED));
  }
  if (stored->back().revision() < job.revision()) {
    events.push_back(MakeEvent(job, ExportJobEvent::KIND_CHANGED));
  }
  return events;
}

}  // namespace

grpc::ServerWriteReactor<ExportJobEvent>* StartJobWatch(
    ProgressHub* hub, const JobStore* store, Executor* readers, const WatchLimits& limits,
    std::string tenant, const exportjobs::v1::WatchExportJobRequest& request,
    std::shared_ptr<void> slot) {
  WatchStream::Config config;
  config.job_id = request.id();
  config.tenant = tenant;
  config.limits = limits;
  auto* reactor = new Reactor(hub, std::move(config), std::move(slot));
  // Register before reading, so that no change committed after the read can be missed; the
  // stream drops what the snapshot already covers by revision.
  if (!reactor->Register()) return reactor;
  readers->Submit(
      [stream = reactor->stream(), store, limits, tenant = std::move(tenant), request]() {
        bool terminal = false;
        absl::StatusOr<std::vector<EventPtr>> initial =
            InitialEvents(*store, limits, tenant, request, &terminal);
        stream->Init(std::move(initial), terminal);
      });
  return reactor;
}

grpc::ServerWriteReactor<ExportJobEvent>* StartAllJobsWatch(
    ProgressHub* hub, const WatchLimits& limits, std::string tenant,
    const exportjobs::v1::WatchExportJobsRequest& request, std::shared_ptr<void> slot) {
  WatchStream::Config config;
  config.tenant = std::move(tenant);
  config.status_filter = request.status();
  config.entity_filter = request.entity_type();
  config.limits = limits;
  auto* reactor = new Reactor(hub, std::move(config), std::move(slot));
  if (!reactor->Register()) return reactor;
  // Headers tell the client that the watch is registered: every change after it arrives is
  // delivered. They go out before any event (writes wait for Activate).
  reactor->StartSendInitialMetadata();
  reactor->stream()->Activate();
  return reactor;
}

}  // namespace exportd
