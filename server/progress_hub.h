// ProgressHub: fans committed job changes out to watchers. Watchers of one job are found by its
// id; watchers of all jobs see every change and filter it themselves.
//
// Publishing costs O(watchers of that job + watchers of all jobs) non-blocking hand-offs and no
// allocation per watcher: the event is built once and shared.
//
// Thread safety: all methods are thread-safe. Publish is called by one thread (the committer),
// so each watcher sees changes in commit order.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "exportjobs/v1/export_service.pb.h"
#include "storage/job_store.h"

namespace exportd {

using ExportJobEvent = exportjobs::v1::ExportJobEvent;
using EventPtr = std::shared_ptr<const ExportJobEvent>;

// What the hub delivers to. Implementations must not block in either method.
class WatchTarget {
 public:
  virtual ~WatchTarget() = default;
  // `tenant` owns the job.
  virtual void Deliver(const EventPtr& event, const std::string& tenant) = 0;
  // The server is shutting down: flush what is queued, then end the stream.
  virtual void ServerShutdown() = 0;
};

class ProgressHub {
 public:
  // Progress reports (changes of a processing job that keep it processing) of one job reach
  // watchers at most once per `progress_interval`; the latest one is held back and delivered by
  // Flush once the interval has passed, or dropped for a newer change. Zero delivers every one.
  explicit ProgressHub(absl::Duration progress_interval = absl::ZeroDuration())
      : progress_interval_(progress_interval) {}

  // Registers a watcher of job `id` (or, with an empty id, of all jobs). Returns false, and
  // registers nothing, once Shutdown has begun.
  bool Add(const std::string& id, std::shared_ptr<WatchTarget> target);
  void Remove(const std::string& id, const WatchTarget* target);

  // Delivers the change to the job's watchers and to the watchers of all jobs (or holds a
  // progress report back, see above). Called by one thread, in commit order, as is Flush.
  void Publish(const JobChange& change);

  // Delivers the progress reports held back whose interval has passed.
  void Flush();

  // Delivers the progress reports held back (so that every watcher ends with its job's latest
  // state), then tells every watcher to finish and refuses new ones.
  void Shutdown();

  size_t watcher_count() const;

  // Waits until no watcher is registered, or until `deadline`. True when none is.
  bool AwaitNoWatchers(absl::Time deadline) const;

 private:
  using Targets = std::vector<std::shared_ptr<WatchTarget>>;
  // Copy-on-write: a delivery takes a reference to the current lists under the lock and delivers
  // without it. Add and Remove change a list in place while no delivery runs (so that a burst of
  // adds is not quadratic), and a copy while one does.
  using TargetList = std::shared_ptr<Targets>;
  // `list`, made safe to change: created, or copied while a delivery may hold it.
  Targets& Own(TargetList& list) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  struct Throttle {
    absl::Time last_delivered;
    EventPtr held;  // The newest progress report not yet delivered.
    std::string tenant;
  };
  void Deliver(const EventPtr& event, const std::string& tenant) ABSL_LOCKS_EXCLUDED(mu_);

  const absl::Duration progress_interval_;
  // Held by Publish and Flush (the committer) and by Shutdown, across their deliveries, so
  // that a watcher sees changes in commit order also at shutdown.
  absl::Mutex throttle_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  // Jobs that are processing, by id.
  absl::flat_hash_map<std::string, Throttle> throttles_ ABSL_GUARDED_BY(throttle_mu_);
  absl::flat_hash_map<std::string, TargetList> by_job_ ABSL_GUARDED_BY(mu_);
  TargetList all_jobs_ ABSL_GUARDED_BY(mu_);
  size_t count_ ABSL_GUARDED_BY(mu_) = 0;
  // Deliveries (and a shutdown) holding references to lists, from taking them to letting go.
  int deliveries_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace exportd
