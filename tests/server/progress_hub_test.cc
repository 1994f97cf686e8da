// ProgressHub's lists of watchers: who gets a change when watchers come and go, also while a
// change is being delivered.
#include "server/progress_hub.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace exportd {
namespace {

// Records the job ids it was given; `on_deliver`, when set, runs inside each delivery.
class RecordingTarget final : public WatchTarget {
 public:
  void Deliver(const EventPtr& event, const std::string& tenant) override {
    seen.push_back(event->job().id());
    if (on_deliver) on_deliver();
  }
  void ServerShutdown() override { ++shutdowns; }

  std::vector<std::string> seen;
  int shutdowns = 0;
  std::function<void()> on_deliver;
};

JobChange Created(const std::string& id) {
  JobRecord record;
  record.set_tenant("t");
  record.mutable_job()->set_id(id);
  record.mutable_job()->set_status(exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  record.mutable_job()->set_revision(1);
  return JobChange{std::nullopt, record};
}

TEST(ProgressHubTest, WatchersAddedOrRemovedDuringADeliveryCountFromTheNextChange) {
  ProgressHub hub;
  auto a = std::make_shared<RecordingTarget>();
  auto b = std::make_shared<RecordingTarget>();
  auto c = std::make_shared<RecordingTarget>();
  auto d = std::make_shared<RecordingTarget>();
  ASSERT_TRUE(hub.Add("", a));
  ASSERT_TRUE(hub.Add("", b));
  ASSERT_TRUE(hub.Add("", d));
  // Inside its first delivery, `a` removes `b`, which comes after it in the list being
  // delivered, and adds `c`.
  bool first = true;
  a->on_deliver = [&] {
    if (!std::exchange(first, false)) return;
    hub.Remove("", b.get());
    EXPECT_TRUE(hub.Add("", c));
  };

  hub.Publish(Created("job-1"));
  hub.Publish(Created("job-2"));

  EXPECT_EQ(a->seen, (std::vector<std::string>{"job-1", "job-2"}));
  EXPECT_EQ(b->seen, (std::vector<std::string>{"job-1"}));
  EXPECT_EQ(c->seen, (std::vector<std::string>{"job-2"}));
  EXPECT_EQ(d->seen, (std::vector<std::string>{"job-1", "job-2"}));
  EXPECT_EQ(hub.watcher_count(), 3u);
}

TEST(ProgressHubTest, ManyWatchersOfAllJobsAndOfOneJobComeAndGo) {
  constexpr int kWatchers = 2000;
  ProgressHub hub;
  std::vector<std::shared_ptr<RecordingTarget>> all(kWatchers), one(kWatchers);
  for (int i = 0; i < kWatchers; ++i) {
    all[i] = std::make_shared<RecordingTarget>();
    one[i] = std::make_shared<RecordingTarget>();
    ASSERT_TRUE(hub.Add("", all[i]));
    ASSERT_TRUE(hub.Add("job-1", one[i]));
  }
  EXPECT_EQ(hub.watcher_count(), 2u * kWatchers);

  hub.Publish(Created("job-1"));
  for (int i = 0; i < kWatchers; i += 2) {
    hub.Remove("", all[i].get());
    hub.Remove("job-1", one[i].get());
  }
  hub.Remove("job-1", all[1].get());  // Not a watcher of that job: nothing changes.
  EXPECT_EQ(hub.watcher_count(), static_cast<size_t>(kWatchers));
  hub.Publish(Created("job-1"));
  hub.Publish(Created("job-2"));

  for (int i = 0; i < kWatchers; ++i) {
    const bool kept = i % 2 == 1;
    EXPECT_EQ(all[i]->seen.size(), kept ? 3u : 1u) << "watcher of all jobs " << i;
    EXPECT_EQ(one[i]->seen.size(), kept ? 2u : 1u) << "watcher of job-1 " << i;
  }

  // The rest go, one list emptied entirely: a change reaches no one.
  for (int i = 1; i < kWatchers; i += 2) {
    hub.Remove("", all[i].get());
    hub.Remove("job-1", one[i].get());
  }
  EXPECT_EQ(hub.watcher_count(), 0u);
  hub.Publish(Created("job-1"));
  EXPECT_EQ(all[1]->seen.size(), 3u);
  EXPECT_EQ(one[1]->seen.size(), 2u);
}

TEST(ProgressHubTest, ShutdownReachesEveryWatcherAndRefusesNewOnes) {
  ProgressHub hub;
  auto a = std::make_shared<RecordingTarget>();
  auto b = std::make_shared<RecordingTarget>();
  ASSERT_TRUE(hub.Add("", a));
  ASSERT_TRUE(hub.Add("job-1", b));
  hub.Shutdown();
  EXPECT_EQ(a->shutdowns, 1);
  EXPECT_EQ(b->shutdowns, 1);
  EXPECT_FALSE(hub.Add("", std::make_shared<RecordingTarget>()));
  EXPECT_EQ(hub.watcher_count(), 2u);
}

}  // namespace
}  // namespace exportd
