// The JobStore contract test suite: what every JobStore implementation must do, written once and
// run against each implementation through a factory.
//
// To run it against an implementation, link the exportd_job_store_contract_test object library
// into a test executable and instantiate the suite there:
//
//   INSTANTIATE_TEST_SUITE_P(MyStore, JobStoreContractTest,
//                            ::testing::Values(JobStoreFactory{"MyStore", &OpenMyStore}),
//                            JobStoreFactoryName);
//
// Each test gets a fresh empty directory; the factory may be called more than once on it (to
// reopen the store, and while another store has it open).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/job_id.h"
#include "gtest/gtest.h"
#include "storage/job_store.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {

using ::exportd::test_support::TempDir;

struct JobStoreFactory {
  // Names the instantiation in test names; letters, digits and '_' only.
  std::string name;
  // Opens the store kept in directory `dir`. A durable store keeps its data there across opens,
  // and refuses a second open while the first is alive with UNAVAILABLE.
  std::function<absl::StatusOr<std::unique_ptr<JobStore>>(const std::string& dir)> open;
};

// Prints the factory's name (in test listings).
inline void PrintTo(const JobStoreFactory& factory, std::ostream* os) { *os << factory.name; }

// For INSTANTIATE_TEST_SUITE_P: names each instance after its factory.
inline std::string JobStoreFactoryName(const ::testing::TestParamInfo<JobStoreFactory>& info) {
  return info.param.name;
}

// The fixture. Jobs get short names ("a", "b", ...) that the rendering helpers print instead of
// ids, and times print as the offset from kT0, so that expectations read like "a@1s b@30s".
class JobStoreContractTest : public ::testing::TestWithParam<JobStoreFactory> {
 protected:
  // The fake clock starts here; the n-th job made by NewJob is created at kT0 + n seconds.
  static const absl::Time kT0;

  void SetUp() override;
  void TearDown() override;

  JobStore& store() { return *store_; }
  const std::string& dir() const { return dir_.path(); }

  // Closes the store and opens it again on the same directory.
  void Reopen();

  // A new PENDING job at revision 1, created one second after the previous one, with the next
  // id, so that ids (and creation times) follow the order of NewJob calls.
  JobRecord NewJob(const std::string& name,
                   EntityType entity_type = exportjobs::v1::ENTITY_TYPE_ACCOUNTS);

  // `record` one revision later: revision + 1, updated_at now.
  JobRecord Next(const JobRecord& record) const;
  // The next revision of `record`, claimed: PROCESSING with a lease expiring at `expires_at`.
  JobRecord Claimed(const JobRecord& record, absl::Time expires_at) const;
  // The next revision of `record`, PENDING again (lease dropped), claimable from `ready_at`.
  JobRecord Requeued(const JobRecord& record, absl::Time ready_at) const;
  // The next revision of `record` in `status` (lease dropped).
  JobRecord WithStatus(const JobRecord& record, ExportJobStatus status) const;

  // Commits one change.
  absl::Status Create(const JobRecord& after);
  absl::Status Update(const JobRecord& before, const JobRecord& after);
  absl::Status Delete(const JobRecord& before);

  // Renderings of the store's contents; on error they return "error: <status>".
  // Queue entries with ready_at <= `by`, as "a@1s b@30s".
  std::string Queue(absl::Time by = absl::InfiniteFuture(), int limit = 1000) const;
  // Lease entries with expiry <= `by`, as "a@90s".
  std::string Leases(absl::Time by = absl::InfiniteFuture(), int limit = 1000) const;
  // The jobs List returns, as "c b a", with " +more" when `more` is set.
  std::string List(const ListQuery& query) const;
  // All jobs, newest first, as "c b a".
  std::string AllJobs() const;
  // ReadEvents, as "a/2:processing a/3:pending".
  std::string Events(const JobRecord& record, int64_t after_revision = 0, int limit = 1000) const;
  // FindByRequestId, as the job's name, or "none".
  std::string Find(const std::string& tenant, const std::string& request_id) const;
  // LastJobId, as the job's name, or "" when there are no jobs.
  std::string Last() const;

  // The name NewJob gave to `id`, or the id itself when it has none.
  std::string Name(const std::string& id) const;
  // `time` as an offset from kT0, e.g. "30s" or "1m30s".
  static std::string Offset(absl::Time time);

  FakeClock clock_{kT0};

 private:
  TempDir dir_;
  JobIdGenerator ids_{&clock_};
  std::map<std::string, std::string> names_;  // id -> name.
  std::unique_ptr<JobStore> store_;
};

}  // namespace exportd::testing
