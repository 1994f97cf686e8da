// End-to-end fault tests with the real export-server and export-worker binaries:
//   1. A worker killed with SIGKILL while a part upload streams: the server drops the cut
//      upload at once (its temporary file goes while the lease still runs; the part is never
//      stored or counted); once the lease expires another worker completes the job as attempt
//      2; every part and the whole file download and match the manifest; the parts directory
//      of the job holds exactly the completed attempt's parts, not the parts the killed
//      attempt had stored (the design: an attempt's parts are discarded when it ends without
//      completing; a temporary file is removed when its upload ends).
//   2. The parts directory on a full disk (a 1 MiB tmpfs in a mount namespace of the server's
//      own): the upload is refused UNAVAILABLE "No space left on device", the worker retries,
//      then fails the attempt with that error; the job is retried and then FAILED with an
//      error_message naming the cause, never completed; its part files are removed; and a job
//      that fits completes on the same disk afterwards.
//   3. The job's parts directory replaced by a file (an I/O error the server cannot get past):
//      the same, with "Not a directory", while another job completes meanwhile.
// Waits poll an observable condition (a file, the job's state) with a deadline.

#include <signal.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/fault_helpers.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::e2e {
namespace {

namespace fs = std::filesystem;
using exportjobs::v1::CreateExportJobRequest;
using test_support::TempDir;
using ::testing::HasSubstr;

const std::vector<std::string> kActivityFields = {
    "id", "account_id", "person_id", "type", "subject", "duration_seconds", "occurred_at"};

// An export of every activity (20 per account) as CSV in parts of `part_size` bytes.
CreateExportJobRequest ActivitiesExport(int64_t part_size) {
  CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACTIVITIES);
  for (const std::string& field : kActivityFields) request.add_fields(field);
  request.set_format(exportjobs::v1::EXPORT_FORMAT_CSV);
  request.set_part_size_bytes(part_size);
  return request;
}

// A small export: the id and name of every account.
CreateExportJobRequest SmallExport() {
  CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  request.add_fields("id");
  request.add_fields("name");
  return request;
}

// Checks a completed job against its manifest: each part (DownloadExport) has the manifest's
// size and SHA-256, the whole file is the parts in order, its size is file_size_bytes, and it
// starts with the CSV header, and record_count is `records`, as is the sum of the parts'.
void ExpectFileMatchesManifest(Server& server, const ExportJob& job, int64_t records) {
  ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << Describe(job);
  ASSERT_EQ(job.parts_size(), job.file_parts());
  std::string joined;
  int64_t part_records = 0;
  for (int i = 0; i < job.parts_size(); ++i) {
    const exportjobs::v1::ExportPart& part = job.parts(i);
    EXPECT_EQ(part.part_number(), i + 1);
    ASSERT_OK_AND_ASSIGN(const std::string bytes, server.DownloadPart(job.id(), i + 1));
    EXPECT_EQ(static_cast<int64_t>(bytes.size()), part.size_bytes()) << "part " << i + 1;
    EXPECT_EQ(Sha256Hex(bytes), part.sha256()) << "part " << i + 1;
    joined += bytes;
    part_records += part.record_count();
  }
  ASSERT_OK_AND_ASSIGN(const std::string file, server.DownloadPart(job.id(), 0));
  EXPECT_EQ(static_cast<int64_t>(file.size()), job.file_size_bytes());
  EXPECT_TRUE(file == joined) << "the whole file is not its parts in order";
  EXPECT_TRUE(absl::StartsWith(file, "id,")) << file.substr(0, 100);
  EXPECT_EQ(job.record_count(), records);
  EXPECT_EQ(part_records, records);
}

// The part files of the job's completed attempt, as the server must leave them: one attempt
// directory holding 1.part .. N.part and nothing else (no temporary file, no other attempt's
// part), each with the manifest's SHA-256.
void ExpectOnlyTheCompletedParts(const std::string& job_dir, const ExportJob& job) {
  std::vector<std::string> files;
  std::vector<std::string> expected;
  const bool settled = PollUntil(
      [&] {
        files = FilesUnder(job_dir);
        if (files.empty()) return false;
        // The completed attempt has the newest epoch.
        const std::string epoch = fs::path(files.back()).parent_path().string();
        expected.clear();
        for (int i = 1; i <= job.file_parts(); ++i) {
          expected.push_back((fs::path(epoch) / absl::StrCat(i, ".part")).string());
        }
        std::sort(expected.begin(), expected.end());
        return files == expected;
      },
      absl::Seconds(10));
  ASSERT_TRUE(settled) << "files under " << job_dir << ":\n  " << absl::StrJoin(files, "\n  ")
                       << "\nexpected:\n  " << absl::StrJoin(expected, "\n  ");
  // And no other attempt's directory.
  int directories = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(job_dir)) {
    directories += entry.is_directory() ? 1 : 0;
  }
  EXPECT_EQ(directories, 1);
  for (const exportjobs::v1::ExportPart& part : job.parts()) {
    const fs::path path = fs::path(job_dir) / fs::path(files[0]).parent_path() /
                          absl::StrCat(part.part_number(), ".part");
    ASSERT_OK_AND_ASSIGN(const std::string bytes, ReadWholeFile(path.string()));
    EXPECT_EQ(Sha256Hex(bytes), part.sha256()) << path;
  }
}

// --- 1. A worker killed mid-upload ----------------------------------------------------------

// 24,000 accounts: 480,000 activities, about 36 MB of CSV, in parts of 16 MiB. A part's upload
// creates its temporary file when the header arrives and renames it into place only after the
// trailer and a synced write, so a temporary file is an upload in flight. Its 16 MiB stream of
// 1 MiB messages lasts several times longer than the commit after it, so the poll that first
// sees the file sees it while the part is still arriving. The worker is killed during the
// upload of part 2 or later, so that its attempt has parts stored.
constexpr int kBigAccounts = 24000;
constexpr int64_t kActivities = 20 * kBigAccounts;
constexpr int64_t kBigPart = int64_t{16} << 20;
// For the other tests.
constexpr int kAccounts = 4000;

TEST(WorkerKilledMidUploadTest, AnotherWorkerCompletesTheJobAndNoPartOfTheCutUploadRemains) {
  TempDir dir;
  const std::string db = dir.path() + "/demo.db";
  ASSERT_OK(SeedDemo(db, kBigAccounts));
  ASSERT_OK_AND_ASSIGN(
      Server server,
      Server::Start(dir.path() + "/server", {"--lease_duration=3s", "--retry_backoff=100ms"}));
  ASSERT_OK_AND_ASSIGN(
      Worker worker_a,
      Worker::Start(dir.path(), "worker-a", server.process->address(), db, {"--concurrency=1"}));
  ExportJob created;
  ASSERT_TRUE(server.Create(ActivitiesExport(kBigPart), &created).ok());
  const std::string job_dir = dir.path() + "/server/parts/" + created.id();

  // Wait for an upload in flight after the first part: a temporary file of part 2 or later.
  std::string temp;
  int64_t temp_size = 0;
  ASSERT_TRUE(PollUntil(
      [&] {
        for (const std::string& file : FilesUnder(job_dir)) {
          if (!absl::StrContains(file, ".part.tmp-") ||
              absl::StartsWith(fs::path(file).filename().string(), "1.part")) {
            continue;
          }
          std::error_code error;
          const uintmax_t size = fs::file_size(fs::path(job_dir) / file, error);
          if (!error) {
            temp = file;
            temp_size = static_cast<int64_t>(size);
            return true;
          }
        }
        return false;
      },
      absl::Seconds(30), absl::Microseconds(200)))
      << "no upload in flight seen; files: " << absl::StrJoin(FilesUnder(job_dir), ", ") << "\n"
      << worker_a.Log();
  ASSERT_EQ(kill(worker_a.process->pid(), SIGKILL), 0);
  ASSERT_OK_AND_ASSIGN(const test_support::ExitStatus killed,
                       worker_a.process->Wait(kProcessTimeout));
  EXPECT_FALSE(killed.exited);

  // The cut upload ends on the server: its temporary file goes and the part is never stored.
  const fs::path temp_path = fs::path(job_dir) / temp;
  const std::string temp_name = temp_path.filename().string();
  const std::string cut_part = temp_name.substr(0, temp_name.find(".part"));
  ASSERT_TRUE(PollUntil([&] { return !fs::exists(temp_path); }, absl::Seconds(10)))
      << temp << " is still there";
  EXPECT_FALSE(fs::exists(temp_path.parent_path() / absl::StrCat(cut_part, ".part")))
      << "part " << cut_part << " was stored although its upload was cut (its file had "
      << temp_size << " bytes on disk)";
  // Gone with the upload, not with the attempt: the lease has not expired yet.
  ExportJob during;
  ASSERT_TRUE(server.Get(created.id(), &during).ok());
  EXPECT_EQ(during.status(), exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING) << Describe(during);
  EXPECT_EQ(during.attempt(), 1) << Describe(during);
  int32_t cut_number = 0;
  ASSERT_TRUE(absl::SimpleAtoi(cut_part, &cut_number)) << temp;
  EXPECT_LT(during.progress().parts_uploaded(), cut_number) << Describe(during);

  // Another worker takes the job once the lease expired, and completes it.
  ASSERT_OK_AND_ASSIGN(Worker worker_b,
                       Worker::Start(dir.path(), "worker-b", server.process->address(), db));
  ASSERT_OK_AND_ASSIGN(const ExportJob job,
                       server.AwaitJob(
                           created.id(), [](const ExportJob& j) { return IsTerminal(j.status()); },
                           absl::Seconds(60), "terminal state"));
  ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << Describe(job) << "\n"
                                                                       << worker_b.Log();
  EXPECT_EQ(job.attempt(), 2) << Describe(job);
  EXPECT_GE(job.file_parts(), 3);
  EXPECT_TRUE(
      PollUntil([&] { return !LogEvents(worker_b.Log(), "job.completed", job.id()).empty(); },
                absl::Seconds(10)))
      << worker_b.Log();
  ExpectFileMatchesManifest(server, job, kActivities);
  ExpectOnlyTheCompletedParts(job_dir, job);

  absl::StatusOr<test_support::ExitStatus> exit = worker_b.process->Terminate(kProcessTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
  exit = server.process->Terminate(kProcessTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString() << "\n" << server.process->StderrTail();
}

// --- 2 and 3. The parts directory failing ------------------------------------------------

// A server whose uploads cannot be stored: two attempts, each given up by the worker within
// its 3 s lease.
const std::vector<std::string> kFailingServerFlags = {"--lease_duration=3s", "--max_attempts=2",
                                                      "--retry_backoff=100ms"};

// Waits for the job to end; it must have FAILED after both attempts, with an error_message
// that names the upload and `cause`, and the worker must have seen the upload refused with
// `cause` (retried, then the attempt failed).
void ExpectFailedWith(Server& server, const Worker& worker, const std::string& id,
                      const std::string& cause) {
  ASSERT_OK_AND_ASSIGN(const ExportJob job,
                       server.AwaitJob(
                           id, [](const ExportJob& j) { return IsTerminal(j.status()); },
                           absl::Seconds(40), "terminal state"));
  ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_FAILED) << Describe(job);
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_THAT(job.error_message(), HasSubstr("uploading part 1"));
  EXPECT_THAT(job.error_message(), HasSubstr(cause));
  EXPECT_EQ(job.file_parts(), 0);
  EXPECT_EQ(job.download_url(), "");

  // The worker logs asynchronously: its last lines may come after the job ended.
  std::string log;
  EXPECT_TRUE(PollUntil(
      [&] {
        log = worker.Log();
        return LogEvents(log, "job.failed", id).size() >= 2;
      },
      absl::Seconds(10)));
  const std::vector<nlohmann::json> retries = LogEvents(log, "job.call_retrying", id);
  ASSERT_FALSE(retries.empty()) << log;
  EXPECT_EQ(retries[0].value("rpc", ""), "UploadExportPart");
  EXPECT_EQ(retries[0].value("code", ""), "UNAVAILABLE");
  EXPECT_THAT(retries[0].value("error", ""), HasSubstr(cause));
  const std::vector<nlohmann::json> failed = LogEvents(log, "job.failed", id);
  ASSERT_EQ(failed.size(), 2u) << log;
  EXPECT_EQ(failed[0].value("will_retry", false), true);
  EXPECT_EQ(failed[1].value("will_retry", true), false);
  EXPECT_THAT(failed[1].value("error", ""), HasSubstr(cause));
}

// Runs export-server in a mount namespace of its own (and a user namespace, so that no root is
// needed) with `parts_dir` on a tmpfs of `size`. The same process (exec all the way), so the
// test signals and waits for the server itself.
std::string WriteFullDiskLauncher(const std::string& dir, const std::string& parts_dir,
                                  const std::string& size) {
  const std::string path = dir + "/full-disk-server.sh";
  std::ofstream script(path);
  script << "#!/bin/sh\n"
         << "exec unshare --user --map-root-user --mount sh -c "
         << "'mount -t tmpfs -o size=" << size << " exportd-full \"$0\" && exec \"$@\"' "
         << "'" << parts_dir << "' '" << EXPORT_SERVER_PATH << "' \"$@\"\n";
  script.close();
  fs::permissions(path, fs::perms::owner_all);
  return path;
}

// Whether this machine lets an unprivileged mount namespace mount a tmpfs.
bool CanMountTmpfs(const std::string& dir) {
  const std::string target = dir + "/probe";
  fs::create_directories(target);
  bench::ChildProcess::Options options;
  options.argv = {"unshare",
                  "--user",
                  "--map-root-user",
                  "--mount",
                  "sh",
                  "-c",
                  "mount -t tmpfs -o size=64k probe \"$0\"",
                  target};
  options.stderr_path = dir + "/probe.stderr";
  absl::StatusOr<std::unique_ptr<bench::ChildProcess>> probe = bench::ChildProcess::Start(options);
  if (!probe.ok()) return false;
  absl::StatusOr<test_support::ExitStatus> exit = (*probe)->Wait(kProcessTimeout);
  return exit.ok() && exit->success();
}

TEST(PartsDirectoryFailingTest, FullDiskFailsTheJobWithNoSpaceAndAJobThatFitsCompletes) {
  TempDir dir;
  if (!CanMountTmpfs(dir.path())) {
    GTEST_SKIP() << "this machine does not allow a tmpfs in a user mount namespace (unshare)";
  }
  const std::string db = dir.path() + "/demo.db";
  ASSERT_OK(SeedDemo(db, kAccounts));
  const std::string data_dir = dir.path() + "/server";
  const std::string parts_dir = data_dir + "/parts";
  fs::create_directories(parts_dir);
  test_support::ServerProcess::Options options;
  options.binary = WriteFullDiskLauncher(dir.path(), parts_dir, "1m");
  options.data_dir = data_dir;
  options.extra_args = kFailingServerFlags;
  ASSERT_OK_AND_ASSIGN(Server server, Server::Start(options));
  // The tmpfs is seen through the server's own root (/proc/PID/root).
  const std::string seen_parts = absl::StrCat("/proc/", server.process->pid(), "/root", parts_dir);
  ASSERT_OK_AND_ASSIGN(
      Worker worker,
      Worker::Start(dir.path(), "worker-1", server.process->address(), db, {"--concurrency=1"}));

  // Parts of 4 MiB on a 1 MiB disk.
  ExportJob big;
  ASSERT_TRUE(server.Create(ActivitiesExport(int64_t{4} << 20), &big).ok());
  ExpectFailedWith(server, worker, big.id(), "No space left on device");
  // The attempts' part files are removed (the disk is not left full).
  EXPECT_TRUE(
      PollUntil([&] { return FilesUnder(seen_parts + "/" + big.id()).empty(); }, absl::Seconds(10)))
      << absl::StrJoin(FilesUnder(seen_parts + "/" + big.id()), ", ");

  // A job that fits completes on the same disk.
  ExportJob small;
  ASSERT_TRUE(server.Create(SmallExport(), &small).ok());
  ASSERT_OK_AND_ASSIGN(const ExportJob done,
                       server.AwaitJob(
                           small.id(), [](const ExportJob& j) { return IsTerminal(j.status()); },
                           absl::Seconds(30), "terminal state"));
  ExpectFileMatchesManifest(server, done, kAccounts);
  ExpectOnlyTheCompletedParts(seen_parts + "/" + small.id(), done);

  absl::StatusOr<test_support::ExitStatus> exit = worker.process->Terminate(kProcessTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
  exit = server.process->Terminate(kProcessTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString() << "\n" << server.process->StderrTail();
}

TEST(PartsDirectoryFailingTest, UnusableJobDirectoryFailsTheJobNamingTheError) {
  TempDir dir;
  const std::string db = dir.path() + "/demo.db";
  ASSERT_OK(SeedDemo(db, 200));
  ASSERT_OK_AND_ASSIGN(Server server, Server::Start(dir.path() + "/server", kFailingServerFlags));
  // The job's directory of parts is a file: no part of it can be created.
  ExportJob broken;
  ASSERT_TRUE(server.Create(SmallExport(), &broken).ok());
  const std::string parts_dir = dir.path() + "/server/parts";
  fs::create_directories(parts_dir);
  std::ofstream(parts_dir + "/" + broken.id()) << "not a directory\n";
  ExportJob fine;
  ASSERT_TRUE(server.Create(SmallExport(), &fine).ok());

  ASSERT_OK_AND_ASSIGN(
      Worker worker,
      Worker::Start(dir.path(), "worker-1", server.process->address(), db, {"--concurrency=2"}));
  ExpectFailedWith(server, worker, broken.id(), "Not a directory");
  ASSERT_OK_AND_ASSIGN(const ExportJob done,
                       server.AwaitJob(
                           fine.id(), [](const ExportJob& j) { return IsTerminal(j.status()); },
                           absl::Seconds(30), "terminal state"));
  ExpectFileMatchesManifest(server, done, 200);

  absl::StatusOr<test_support::ExitStatus> exit = worker.process->Terminate(kProcessTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
  exit = server.process->Terminate(kProcessTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
}

}  // namespace
}  // namespace exportd::e2e
