// End-to-end kill -9 loop: the real export-server on one data directory is killed with SIGKILL
// at random moments while several threads create jobs, run the worker protocol (claim, progress,
// upload, complete) and cancel, and is restarted on the same directory. After every restart:
//   1. no acknowledged create is lost: every acknowledged id is Get-able, with the same request;
//   2. no terminal state changes: a job's status and revision, once seen terminal, stay so;
//   3. no job completes twice: a completion (completed_at, parts, file size) never changes, and
//      a Complete under another lease is refused;
//   4. no write under a stale lease is accepted: a lease that was lost (the job was claimed again,
//      or its lease expired) gets ABORTED for ReportProgress, UploadExportPart and Complete.
// At the end the load stops, workers run until every job is terminal, and:
//   5. every completed job's file and parts download (gRPC DownloadExport) and match the manifest.
//
// EXPORTD_KILL_CYCLES sets the number of kills (default 30); EXPORTD_KILL_SEED the seed (default
// random; it is printed): it fixes the load times and every thread's choices, not the threads'
// interleaving. The server runs with a 1 s lease, no retry backoff and unlimited attempts, so
// leases expire during the test and no job fails from repeated expiries. The random delay before
// each kill is how long the load runs, not a synchronisation: nothing sleeps to wait for an event,
// waits poll with deadlines.

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/export_client.h"
#include "google/protobuf/util/message_differencer.h"
#include "tests/support/server_process.h"
#include "tests/support/temp_dir.h"

#ifndef EXPORT_SERVER_PATH
#error "EXPORT_SERVER_PATH must name the export-server binary"
#endif

namespace exportd {
namespace {

using client::CallControl;
using client::CallOptions;
using client::CancelToken;
using client::ExportClient;
using client::WorkerClient;
using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportJobStatus;
using exportjobs::v1::ExportPart;
using google::protobuf::util::MessageDifferencer;
using test_support::ServerProcess;
using test_support::TempDir;

constexpr absl::Duration kShutdownTimeout = absl::Seconds(30);
constexpr absl::Duration kLease = absl::Seconds(1);
constexpr int kCreators = 1;
constexpr int kWorkers = 4;

bool IsTerminal(ExportJobStatus status) {
  return status == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED ||
         status == exportjobs::v1::EXPORT_JOB_STATUS_FAILED ||
         status == exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED;
}

std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char byte : digest) {
    hex.push_back(kHex[byte >> 4]);
    hex.push_back(kHex[byte & 15]);
  }
  return hex;
}

int EnvInt(const char* name, int fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  return std::atoi(value);
}

ServerProcess::Options ServerOptions(const std::string& data_dir) {
  ServerProcess::Options options;
  options.binary = EXPORT_SERVER_PATH;
  options.data_dir = data_dir;
  options.extra_args = {absl::StrCat("--lease_duration=", absl::FormatDuration(kLease)),
                        "--retry_backoff=0s", "--max_attempts=1000000"};
  return options;
}

CallOptions FastCalls() {
  CallOptions options;
  options.timeout = absl::Seconds(5);
  options.retry.max_attempts = 2;
  options.retry.initial_backoff = absl::Milliseconds(20);
  return options;
}

// A lease a worker held; stale once the job was claimed again or the lease ended.
struct HeldLease {
  std::string job_id;
  std::string token;
  int32_t attempt = 0;  // The job's attempt under this lease.
};

// What the test knows of the jobs. Thread-safe.
class Model {
 public:
  void Acknowledged(const ExportJob& job) {
    absl::MutexLock lock(&mu_);
    if (!created_.emplace(job.id(), job).second) {
      problems_.push_back(absl::StrCat("Create acknowledged id ", job.id(), " twice"));
    }
  }

  // Records a job seen terminal (from any call), or checks it against what was seen before.
  // `ordered`: the read was sent after every answer recorded so far arrived (a verification
  // read while no load runs), so it must not show an older state; otherwise an answer to a call
  // of the load may arrive after a later state was recorded, and only a newer revision than the
  // terminal one is a change.
  void Seen(const ExportJob& job, const std::string& where, bool ordered = false) {
    if (!IsTerminal(job.status())) {
      absl::MutexLock lock(&mu_);
      auto it = terminal_.find(job.id());
      if (it != terminal_.end() && (ordered || job.revision() >= it->second.revision())) {
        problems_.push_back(absl::StrCat("(2) ", where, ": job ", job.id(), " was terminal ",
                                         it->second.ShortDebugString(), ", now ",
                                         job.ShortDebugString()));
      }
      return;
    }
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = terminal_.emplace(job.id(), job);
    if (inserted) return;
    const ExportJob& first = it->second;
    if (first.status() != job.status() || first.revision() != job.revision()) {
      problems_.push_back(absl::StrCat("(2) ", where, ": terminal state of ", job.id(),
                                       " changed: status ", first.status(), " revision ",
                                       first.revision(), " -> status ", job.status(), " revision ",
                                       job.revision()));
    }
    if (first.status() == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) {
      MessageDifferencer differencer;
      // The completion: when, the manifest, the size and records.
      ExportJob a, b;
      for (const ExportJob* from : {&first, &job}) {
        ExportJob& to = from == &first ? a : b;
        *to.mutable_completed_at() = from->completed_at();
        *to.mutable_parts() = from->parts();
        to.set_file_size_bytes(from->file_size_bytes());
        to.set_file_parts(from->file_parts());
        to.set_record_count(from->record_count());
      }
      std::string diff;
      differencer.ReportDifferencesToString(&diff);
      if (!differencer.Compare(a, b)) {
        problems_.push_back(
            absl::StrCat("(3) ", where, ": completion of ", job.id(), " changed:\n", diff));
      }
    }
  }

  void AddLeftLease(HeldLease lease) {
    absl::MutexLock lock(&mu_);
    left_leases_.push_back(std::move(lease));
  }
  std::vector<HeldLease> TakeLeftLeases() {
    absl::MutexLock lock(&mu_);
    return std::exchange(left_leases_, {});
  }

  void Problem(std::string text) {
    absl::MutexLock lock(&mu_);
    problems_.push_back(std::move(text));
  }
  std::vector<std::string> TakeProblems() {
    absl::MutexLock lock(&mu_);
    return std::exchange(problems_, {});
  }

  std::map<std::string, ExportJob> created() const {
    absl::MutexLock lock(&mu_);
    return created_;
  }
  std::vector<std::string> created_ids() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> ids;
    for (const auto& [id, job] : created_) ids.push_back(id);
    return ids;
  }
  size_t terminal_count() const {
    absl::MutexLock lock(&mu_);
    return terminal_.size();
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, ExportJob> created_ ABSL_GUARDED_BY(mu_);   // The Create answers.
  std::map<std::string, ExportJob> terminal_ ABSL_GUARDED_BY(mu_);  // First terminal state seen.
  std::vector<HeldLease> left_leases_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> problems_ ABSL_GUARDED_BY(mu_);
};

// The bytes of one part: deterministic in the job, the attempt and the part number.
std::string PartBytes(const std::string& id, int32_t attempt, int part, int records) {
  std::string bytes;
  for (int i = 0; i < records; ++i) {
    absl::StrAppend(&bytes, id, ",", attempt, ",", part, ",", i, "\n");
  }
  return bytes;
}

absl::StatusOr<exportjobs::v1::UploadExportPartResponse> UploadPart(WorkerClient& worker,
                                                                    const HeldLease& lease,
                                                                    int part, int records,
                                                                    ExportPart* manifest,
                                                                    const CallControl& control) {
  const std::string bytes = PartBytes(lease.job_id, lease.attempt, part, records);
  WorkerClient::PartUpload upload;
  upload.header.set_job_id(lease.job_id);
  upload.header.set_lease_token(lease.token);
  upload.header.set_part_number(part);
  upload.header.set_record_count(records);
  upload.trailer.set_size_bytes(static_cast<int64_t>(bytes.size()));
  upload.trailer.set_sha256(Sha256Hex(bytes));
  auto sent = std::make_shared<bool>(false);
  upload.read = [sent, bytes]() -> absl::StatusOr<std::string> {
    if (*sent) return std::string();
    *sent = true;
    return bytes;
  };
  upload.rewind = [sent]() {
    *sent = false;
    return absl::OkStatus();
  };
  manifest->set_part_number(part);
  manifest->set_size_bytes(static_cast<int64_t>(bytes.size()));
  manifest->set_record_count(records);
  manifest->set_sha256(Sha256Hex(bytes));
  return worker.Upload(upload, control);
}

// The load of one cycle; every thread stops when `stop` is cancelled.
struct Load {
  Load(Model* model, ExportClient* exports, WorkerClient* workers)
      : model(model), exports(exports), workers(workers) {}
  Model* model;
  ExportClient* exports;
  WorkerClient* workers;
  CancelToken stop;
  bool abandon = true;  // Workers leave some leases to expire (false for the final drain).
  std::atomic<int64_t> creates{0}, completes{0}, cancels{0}, abandoned{0};
};

void CreateLoop(Load* load, uint32_t seed, const std::string& prefix) {
  std::mt19937 random(seed);
  for (int n = 0; !load->stop.cancelled(); ++n) {
    exportjobs::v1::CreateExportJobRequest request;
    request.set_entity_type(static_cast<exportjobs::v1::EntityType>(1 + random() % 6));
    request.set_request_id(absl::StrCat(prefix, "-", n));
    absl::StatusOr<ExportJob> job = load->exports->Create(request, &load->stop);
    if (!job.ok()) continue;  // Not acknowledged: the job may or may not exist.
    if (job->request_id() != request.request_id() || job->entity_type() != request.entity_type()) {
      load->model->Problem(
          absl::StrCat("Create returned another request's job: ", job->ShortDebugString()));
    }
    load->model->Acknowledged(*job);
    ++load->creates;
    if (random() % 6 == 0) {  // Cancel some jobs while they are pending or processing.
      absl::StatusOr<ExportJob> cancelled = load->exports->Cancel(job->id(), &load->stop);
      if (cancelled.ok()) {
        ++load->cancels;
        load->model->Seen(*cancelled, "Cancel");
      }
    }
    // Pacing, not synchronisation: about as many creates as the workers finish.
    if (!load->stop.SleepUnlessCancelled(absl::Milliseconds(3))) return;
  }
}

void CancelLoop(Load* load, uint32_t seed) {
  std::mt19937 random(seed);
  const std::vector<std::string> ids = load->model->created_ids();
  while (!load->stop.cancelled() && !ids.empty()) {
    // One cancel per few tens of operations: a cancel of a random known job.
    absl::StatusOr<ExportJob> job = load->exports->Cancel(ids[random() % ids.size()], &load->stop);
    if (job.ok()) {
      ++load->cancels;
      load->model->Seen(*job, "Cancel");
    }
    if (!load->stop.SleepUnlessCancelled(absl::Milliseconds(5))) return;  // Pacing, not sync.
  }
}

void WorkerLoop(Load* load, uint32_t seed, const std::string& worker_id) {
  std::mt19937 random(seed);
  CallControl control;
  control.cancel = &load->stop;
  while (!load->stop.cancelled()) {
    exportjobs::v1::ClaimExportJobRequest claim;
    claim.set_worker_id(worker_id);
    claim.mutable_wait()->set_nanos(100 * 1000 * 1000);
    absl::StatusOr<exportjobs::v1::ClaimExportJobResponse> claimed =
        load->workers->Claim(claim, control);
    if (!claimed.ok() || !claimed->has_job()) continue;
    HeldLease lease{claimed->job().id(), claimed->lease().token(), claimed->job().attempt()};
    // Until the job ends, the lease is left behind if the server dies (stale after restart).
    bool ended = false;
    auto leave = [&] {
      if (!ended) load->model->AddLeftLease(lease);
    };

    exportjobs::v1::ReportProgressRequest progress;
    progress.set_job_id(lease.job_id);
    progress.set_lease_token(lease.token);
    progress.set_records_processed(1);
    absl::StatusOr<exportjobs::v1::ReportProgressResponse> reported =
        load->workers->ReportProgress(progress, control);
    if (!reported.ok()) {
      leave();
      continue;
    }
    if (reported->cancel_requested()) {
      exportjobs::v1::ReleaseExportJobRequest release;
      release.set_job_id(lease.job_id);
      release.set_lease_token(lease.token);
      absl::StatusOr<ExportJob> released = load->workers->Release(release, control);
      if (released.ok()) {
        load->model->Seen(*released, "Release");
        ended = true;
      }
      leave();
      continue;
    }
    const int parts = 1 + static_cast<int>(random() % 2);
    exportjobs::v1::CompleteExportJobRequest complete;
    complete.set_job_id(lease.job_id);
    complete.set_lease_token(lease.token);
    bool uploaded = true;
    for (int part = 1; part <= parts && uploaded; ++part) {
      const int records = 1 + static_cast<int>(random() % 20);
      uploaded =
          UploadPart(*load->workers, lease, part, records, complete.add_parts(), control).ok();
      complete.set_record_count(complete.record_count() + records);
    }
    if (!uploaded) {
      leave();
      continue;
    }
    if (load->abandon && random() % 10 == 0) {
      ++load->abandoned;
      leave();  // The lease expires and another worker takes the job.
      continue;
    }
    absl::StatusOr<ExportJob> completed = load->workers->Complete(complete, control);
    if (completed.ok()) {
      ended = true;
      ++load->completes;
      if (completed->status() != exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) {
        load->model->Problem(absl::StrCat("Complete answered a job that is not completed: ",
                                          completed->ShortDebugString()));
      }
      load->model->Seen(*completed, "Complete");
    }
    leave();
  }
}

// All jobs, by paging through List.
absl::StatusOr<std::vector<ExportJob>> ListAll(ExportClient& exports) {
  std::vector<ExportJob> jobs;
  exportjobs::v1::ListExportJobsRequest request;
  request.set_page_size(1000);
  for (;;) {
    absl::StatusOr<exportjobs::v1::ListExportJobsResponse> page = exports.List(request);
    if (!page.ok()) return page.status();
    jobs.insert(jobs.end(), page->jobs().begin(), page->jobs().end());
    if (page->next_page_token().empty()) return jobs;
    request.set_page_token(page->next_page_token());
  }
}

// The fields of a job that its create fixed; the rest changes with the job's life.
ExportJob CreatedPart(const ExportJob& job) {
  ExportJob part;
  part.set_id(job.id());
  part.set_entity_type(job.entity_type());
  *part.mutable_fields() = job.fields();
  *part.mutable_filters() = job.filters();
  *part.mutable_created_at() = job.created_at();
  part.set_request_id(job.request_id());
  part.set_format(job.format());
  part.set_compression(job.compression());
  part.set_part_size_bytes(job.part_size_bytes());
  return part;
}

// (1) and (2)/(3) by Get: every acknowledged job exists with its request, terminal states hold.
void VerifyAll(ExportClient& exports, Model& model, const std::string& where) {
  const std::map<std::string, ExportJob> created = model.created();
  std::vector<std::pair<std::string, ExportJob>> items(created.begin(), created.end());
  constexpr int kReaders = 4;
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      for (size_t i = r; i < items.size(); i += kReaders) {
        const auto& [id, acked] = items[i];
        absl::StatusOr<ExportJob> job = exports.Get(id);
        if (!job.ok()) {
          model.Problem(absl::StrCat("(1) ", where, ": acknowledged job ", id,
                                     " lost: Get: ", job.status().ToString()));
          continue;
        }
        // What the create fixed; the rest changes with the job's life.
        const ExportJob a = CreatedPart(acked), b = CreatedPart(*job);
        if (!MessageDifferencer::Equals(a, b)) {
          model.Problem(absl::StrCat("(1) ", where, ": job ", id, " differs from its create: ",
                                     a.ShortDebugString(), " -> ", b.ShortDebugString()));
        }
        model.Seen(*job, absl::StrCat(where, " Get"), /*ordered=*/true);
      }
    });
  }
  for (std::thread& reader : readers) reader.join();
}

// (4): each left lease whose job was claimed again, or whose lease ended, gets ABORTED for every
// worker write. Returns the leases not yet checkable (the lease may still be live).
std::vector<HeldLease> CheckStaleLeases(ExportClient& exports, WorkerClient& workers, Model& model,
                                        std::vector<HeldLease> leases, const std::string& where,
                                        int* checked) {
  std::vector<HeldLease> later;
  CallControl control;
  control.max_attempts = 1;
  for (HeldLease& lease : leases) {
    absl::StatusOr<ExportJob> job = exports.Get(lease.job_id);
    if (!job.ok()) {
      model.Problem(absl::StrCat("(4) ", where, ": Get of leased job ", lease.job_id, ": ",
                                 job.status().ToString()));
      continue;
    }
    const bool reclaimed = job->attempt() > lease.attempt;
    const bool completed_by_this_lease =
        job->status() == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED && !reclaimed;
    if (completed_by_this_lease) continue;  // Its Complete was applied, the answer lost.
    if (!reclaimed && job->status() == exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING) {
      later.push_back(std::move(lease));  // Still this lease's; it expires within kLease.
      continue;
    }
    ++*checked;
    auto expect_aborted = [&](const absl::Status& status, const char* call) {
      if (status.code() != absl::StatusCode::kAborted) {
        model.Problem(absl::StrCat("(4) ", where, ": ", call, " of job ", lease.job_id,
                                   " with the stale lease of attempt ", lease.attempt, " (job now ",
                                   job->status(), " attempt ", job->attempt(),
                                   "): ", status.ToString(), ", want ABORTED"));
      }
    };
    exportjobs::v1::ReportProgressRequest progress;
    progress.set_job_id(lease.job_id);
    progress.set_lease_token(lease.token);
    progress.set_records_processed(7);
    expect_aborted(workers.ReportProgress(progress, control).status(), "ReportProgress");
    exportjobs::v1::CompleteExportJobRequest complete;
    complete.set_job_id(lease.job_id);
    complete.set_lease_token(lease.token);
    complete.set_record_count(3);
    expect_aborted(UploadPart(workers, lease, 1, 3, complete.add_parts(), control).status(),
                   "UploadExportPart");
    expect_aborted(workers.Complete(complete, control).status(), "CompleteExportJob");
    // A refused write changed nothing: a terminal job is as it was.
    absl::StatusOr<ExportJob> after = exports.Get(lease.job_id);
    if (after.ok()) model.Seen(*after, absl::StrCat(where, " after stale writes"));
  }
  return later;
}

TEST(KillLoopTest, InvariantsHoldAcrossKill9Loop) {
  const int cycles = EnvInt("EXPORTD_KILL_CYCLES", 30);
  const uint32_t seed = static_cast<uint32_t>(EnvInt("EXPORTD_KILL_SEED", 0)) != 0
                            ? static_cast<uint32_t>(EnvInt("EXPORTD_KILL_SEED", 0))
                            : std::random_device()();
  std::cerr << "[ kill-loop ] seed " << seed << " (EXPORTD_KILL_SEED=" << seed
            << " repeats the load times and choices), " << cycles << " cycles\n";
  std::mt19937 random(seed);

  absl::StatusOr<TempDir> dir = TempDir::Create("exportd-killloop-");
  ASSERT_TRUE(dir.ok()) << dir.status();
  const std::string data_dir = dir->path() + "/data";
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(ServerOptions(data_dir));
  ASSERT_TRUE(server.ok()) << server.status();

  Model model;
  std::vector<HeldLease> pending_checks;
  int stale_checked = 0;
  absl::Duration total_load, total_restart, total_verify, max_cycle;
  const absl::Time test_start = absl::Now();

  auto fail_on_problems = [&](const std::string& where) {
    std::vector<std::string> problems = model.TakeProblems();
    for (const std::string& problem : problems) {
      ADD_FAILURE() << "seed " << seed << ", " << where << ": " << problem;
    }
    return !problems.empty();
  };

  for (int cycle = 0; cycle < cycles; ++cycle) {
    const std::string where = absl::StrCat("cycle ", cycle);
    const absl::Time cycle_start = absl::Now();
    auto channel = client::MakeChannel((*server)->address());
    ExportClient exports(channel, FastCalls());
    WorkerClient workers(channel, FastCalls());
    Load load(&model, &exports, &workers);
    std::vector<std::thread> threads;
    for (int t = 0; t < kCreators; ++t) {
      threads.emplace_back(CreateLoop, &load, random(), absl::StrCat("c", cycle, "-", t));
    }
    for (int t = 0; t < kWorkers; ++t) {
      threads.emplace_back(WorkerLoop, &load, random(), absl::StrCat("w", cycle, "-", t));
    }
    threads.emplace_back(CancelLoop, &load, random());

    // How long the load runs before the kill.
    const absl::Duration load_time = absl::Milliseconds(30 + random() % 370);
    CancelToken timer;
    timer.SleepUnlessCancelled(load_time);
    ASSERT_TRUE((*server)->Kill9().ok());
    load.stop.Cancel();
    for (std::thread& thread : threads) thread.join();
    const absl::Time killed_at = absl::Now();

    server = ServerProcess::Start(ServerOptions(data_dir));
    ASSERT_TRUE(server.ok()) << "seed " << seed << ", " << where
                             << ": restart after kill -9: " << server.status();
    const absl::Time restarted_at = absl::Now();

    auto verify_channel = client::MakeChannel((*server)->address());
    ExportClient verify(verify_channel, FastCalls());
    WorkerClient verify_workers(verify_channel, FastCalls());
    VerifyAll(verify, model, where);
    std::vector<HeldLease> leases = model.TakeLeftLeases();
    leases.insert(leases.end(), std::make_move_iterator(pending_checks.begin()),
                  std::make_move_iterator(pending_checks.end()));
    pending_checks =
        CheckStaleLeases(verify, verify_workers, model, std::move(leases), where, &stale_checked);
    const absl::Time verified_at = absl::Now();

    total_load += killed_at - cycle_start;
    total_restart += restarted_at - killed_at;
    total_verify += verified_at - restarted_at;
    max_cycle = std::max(max_cycle, verified_at - cycle_start);
    std::cerr << "[ cycle " << cycle << " ] load " << absl::FormatDuration(load_time) << ": "
              << load.creates << " creates, " << load.completes << " completes, " << load.cancels
              << " cancels, " << load.abandoned << " abandoned; restart "
              << absl::FormatDuration(restarted_at - killed_at) << ", verify "
              << absl::FormatDuration(verified_at - restarted_at) << " (" << model.created().size()
              << " jobs, " << stale_checked << " stale leases checked, " << pending_checks.size()
              << " waiting)\n";
    if (fail_on_problems(where)) return;
  }

  // The end: workers without creates or cancels until every job is terminal.
  const absl::Time drain_start = absl::Now();
  {
    auto channel = client::MakeChannel((*server)->address());
    ExportClient exports(channel, FastCalls());
    WorkerClient workers(channel, FastCalls());
    Load load(&model, &exports, &workers);
    load.abandon = false;
    std::vector<std::thread> threads;
    for (int t = 0; t < kWorkers; ++t) {
      threads.emplace_back(WorkerLoop, &load, random(), absl::StrCat("drain-", t));
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    std::vector<ExportJob> all;
    size_t open = 0;
    for (;;) {
      absl::StatusOr<std::vector<ExportJob>> listed = ListAll(exports);
      ASSERT_TRUE(listed.ok()) << listed.status();
      all = *std::move(listed);
      open = std::count_if(all.begin(), all.end(),
                           [](const ExportJob& job) { return !IsTerminal(job.status()); });
      // Stale leases left over must be checked too; they become checkable as leases end.
      pending_checks = CheckStaleLeases(exports, workers, model, std::move(pending_checks), "drain",
                                        &stale_checked);
      if ((open == 0 && pending_checks.empty()) || absl::Now() > deadline) break;
      load.stop.SleepUnlessCancelled(absl::Milliseconds(50));  // Poll interval.
    }
    load.stop.Cancel();
    for (std::thread& thread : threads) thread.join();
    ASSERT_EQ(open, 0u) << "seed " << seed << ": jobs not terminal 30 s after the load stopped";
    EXPECT_TRUE(pending_checks.empty()) << pending_checks.size() << " leases never ended";
    VerifyAll(exports, model, "drain");
    if (fail_on_problems("drain")) return;

    // (5) Every completed job downloads and matches its manifest, whole and per part.
    int downloaded = 0;
    int by_status[6] = {};
    for (const ExportJob& job : all) {
      model.Seen(job, "final List");
      by_status[job.status()]++;
      if (job.status() != exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) continue;
      ++downloaded;
      auto fetch = [&](int part) -> absl::StatusOr<std::string> {
        std::string bytes;
        absl::Status status =
            exports.Download(job.id(), part, absl::Seconds(10), [&](std::string_view chunk) {
              bytes.append(chunk);
              return absl::OkStatus();
            });
        if (!status.ok()) return status;
        return bytes;
      };
      absl::StatusOr<std::string> whole = fetch(0);
      ASSERT_TRUE(whole.ok()) << job.id() << ": " << whole.status();
      EXPECT_EQ(static_cast<int64_t>(whole->size()), job.file_size_bytes()) << job.id();
      EXPECT_EQ(job.file_parts(), job.parts_size()) << job.id();
      std::string joined;
      int64_t records = 0;
      for (const ExportPart& part : job.parts()) {
        absl::StatusOr<std::string> bytes = fetch(part.part_number());
        ASSERT_TRUE(bytes.ok()) << job.id() << " part " << part.part_number() << ": "
                                << bytes.status();
        EXPECT_EQ(static_cast<int64_t>(bytes->size()), part.size_bytes())
            << job.id() << " part " << part.part_number();
        EXPECT_EQ(Sha256Hex(*bytes), part.sha256()) << job.id() << " part " << part.part_number();
        EXPECT_EQ(*bytes, PartBytes(job.id(), job.attempt(), part.part_number(),
                                    static_cast<int>(part.record_count())))
            << job.id() << " part " << part.part_number() << " is not the completing attempt's";
        joined += *bytes;
        records += part.record_count();
      }
      EXPECT_EQ(joined, *whole) << job.id() << ": the parts joined are not the file";
      EXPECT_EQ(records, job.record_count()) << job.id();
    }
    fail_on_problems("final");
    std::cerr << "[ kill-loop ] " << all.size() << " jobs (" << model.created().size()
              << " acknowledged creates): "
              << by_status[exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED] << " completed, "
              << by_status[exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED] << " cancelled, "
              << by_status[exportjobs::v1::EXPORT_JOB_STATUS_FAILED] << " failed; " << downloaded
              << " downloaded and checked; " << stale_checked << " stale leases refused; drain "
              << absl::FormatDuration(absl::Now() - drain_start) << "\n";
  }
  std::cerr << "[ kill-loop ] " << cycles << " cycles in "
            << absl::FormatDuration(absl::Now() - test_start) << ": load "
            << absl::FormatDuration(total_load) << ", restarts "
            << absl::FormatDuration(total_restart) << ", verification "
            << absl::FormatDuration(total_verify) << ", longest cycle "
            << absl::FormatDuration(max_cycle) << "\n";

  absl::StatusOr<test_support::ExitStatus> exit = (*server)->Terminate(kShutdownTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
}

}  // namespace
}  // namespace exportd
