// End-to-end tests of the whole export flow with the real binaries: `export-worker seed-demo`
// writes a demo SQLite database, export-server (EXPORT_SERVER_PATH) and export-worker
// (EXPORT_WORKER_PATH) run as processes on loopback, jobs are created and followed over gRPC,
// and the files are downloaded with the real `curl` from the signed download_url.
//
// What is checked against what:
//   - a file's rows against the same query written by hand and run on the SQLite file with the
//     sqlite3 C API (cell text; integers as decimal text; NULL as an empty unquoted CSV field,
//     an empty string as a quoted one), and every row against the filter;
//   - the whole file from HTTP against the parts from gRPC DownloadExport, joined in order, for
//     csv and for jsonl + gzip (inflated member by member, each line parsed as JSON);
//   - a job whose worker was killed with SIGKILL mid-export: completed by another worker after
//     the lease expired, as attempt 2; a job whose worker got SIGTERM: released at once and
//     completed by another worker, as attempt 1;
//   - forged or tampered URLs -> 403; a validly signed URL of a deleted job -> 404; a URL with
//     another job's id -> 403 (the signature covers the id); an expired URL -> 410.
//
// Every gRPC call has a deadline; waits for a job's state read WatchExportJob (with a deadline)
// and never sleep. Only the expiry test polls, with a deadline, for a URL to turn 410.

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/catalog.h"
#include "exportjobs/v1/export_service.grpc.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "tests/status_matchers.h"
#include "tests/support/server_process.h"
#include "tests/support/temp_dir.h"

#ifndef EXPORT_SERVER_PATH
#error "EXPORT_SERVER_PATH must name the export-server binary"
#endif
#ifndef EXPORT_WORKER_PATH
#error "EXPORT_WORKER_PATH must name the export-worker binary"
#endif

namespace exportd {
namespace {

using exportjobs::v1::CreateExportJobRequest;
using exportjobs::v1::DeleteExportJobRequest;
using exportjobs::v1::DownloadExportRequest;
using exportjobs::v1::DownloadExportResponse;
using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportJobEvent;
using exportjobs::v1::ExportJobStatus;
using exportjobs::v1::ExportService;
using exportjobs::v1::WatchExportJobRequest;
using test_support::ExitStatus;
using test_support::ServerProcess;
using test_support::TempDir;

constexpr absl::Duration kCallTimeout = absl::Seconds(10);
// How long a job may take from create to a terminal state.
constexpr absl::Duration kJobTimeout = absl::Seconds(40);
constexpr absl::Duration kProcessTimeout = absl::Seconds(30);

std::string StatusText(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), " (", status.error_message(), ")");
}

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout = kCallTimeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// ---------------------------------------------------------------------------------------------
// ChildProcess: any binary as a child, its stdout and stderr drained by a thread of its own.

class ChildProcess {
 public:
  static constexpr size_t kKeepBytes = 256 * 1024;

  // Runs args[0] (looked up in PATH when it has no slash) with args[1..]; stdin is /dev/null.
  // The child is killed when the starting thread ends (PR_SET_PDEATHSIG) or this is destroyed.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    int out[2] = {-1, -1};
    int err[2] = {-1, -1};
    int exec_error[2] = {-1, -1};
    auto close_all = [&] {
      for (int* fds : {out, err, exec_error}) {
        for (int i = 0; i < 2; ++i) {
          if (fds[i] >= 0) close(fds[i]);
          fds[i] = -1;
        }
      }
    };
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
        pipe2(exec_error, O_CLOEXEC) != 0) {
      const int error = errno;
      close_all();
      return absl::InternalError(absl::StrCat("pipe2: ", strerror(error)));
    }
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      const int error = errno;
      close_all();
      return absl::InternalError(absl::StrCat("fork: ", strerror(error)));
    }
    if (pid == 0) {
      // The child: only async-signal-safe calls until exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      sigset_t no_signals;
      sigemptyset(&no_signals);
      sigprocmask(SIG_SETMASK, &no_signals, nullptr);
      const int null_fd = open("/dev/null", O_RDONLY);
      if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0 ||
          dup2(err[1], STDERR_FILENO) < 0) {
        const int error = errno;
        [[maybe_unused]] ssize_t n = write(exec_error[1], &error, sizeof(error));
        _exit(127);
      }
      execvp(argv[0], argv.data());
      const int error = errno;
      [[maybe_unused]] ssize_t n = write(exec_error[1], &error, sizeof(error));
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    close(exec_error[1]);
    out[1] = err[1] = exec_error[1] = -1;
    int child_errno = 0;
    ssize_t n;
    do {
      n = read(exec_error[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    close(exec_error[0]);
    exec_error[0] = -1;
    if (n > 0) {
      int wait_status;
      while (waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
      }
      close_all();
      return absl::InvalidArgumentError(
          absl::StrCat("cannot execute ", args[0], ": ", strerror(child_errno)));
    }
    return std::unique_ptr<ChildProcess>(new ChildProcess(pid, out[0], err[0], args[0]));
  }

  ~ChildProcess() {
    if (!exit_status_.has_value()) KillAndReap();
    if (thread_.joinable()) thread_.join();
    close(stdout_fd_);
    close(stderr_fd_);
  }

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return !exit_status_.has_value(); }

  // Waits until the child printed `line` as a whole line on stdout; false when it did not
  // within `timeout` or its stdout ended first.
  bool AwaitLine(const std::string& line, absl::Duration timeout) {
    const std::string needle = absl::StrCat("\n", line, "\n");
    auto printed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return absl::StrContains(absl::StrCat("\n", stdout_), needle) || eof_;
    };
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&printed), timeout);
    return absl::StrContains(absl::StrCat("\n", stdout_), needle);
  }

  // Waits for the child to exit (its pipes to close) and reaps it. When it still runs after
  // `timeout` it is killed: DEADLINE_EXCEEDED with its output.
  absl::StatusOr<ExitStatus> WaitForExit(absl::Duration timeout) {
    if (exit_status_.has_value()) return *exit_status_;
    bool closed;
    {
      absl::MutexLock lock(&mu_);
      closed = mu_.AwaitWithTimeout(absl::Condition(&eof_), timeout);
    }
    if (!closed) {
      KillAndReap();
      return absl::DeadlineExceededError(
          absl::StrCat(name_, " still ran after ", absl::FormatDuration(timeout),
                       " and was killed; stdout:\n", StdoutText(), "\nstderr:\n", StderrText()));
    }
    Reap();
    return *exit_status_;
  }

  // SIGKILL, then reaps the child.
  void Kill9() {
    if (!exit_status_.has_value()) KillAndReap();
  }

  // SIGTERM, then waits up to `timeout` for the exit.
  absl::StatusOr<ExitStatus> Terminate(absl::Duration timeout) {
    if (exit_status_.has_value()) return absl::FailedPreconditionError("already reaped");
    if (kill(pid_, SIGTERM) != 0) return absl::InternalError(strerror(errno));
    return WaitForExit(timeout);
  }

  std::string StdoutText() const {
    absl::MutexLock lock(&mu_);
    return stdout_;
  }
  std::string StderrText() const {
    absl::MutexLock lock(&mu_);
    return stderr_;
  }

 private:
  ChildProcess(pid_t pid, int stdout_fd, int stderr_fd, std::string name)
      : pid_(pid), stdout_fd_(stdout_fd), stderr_fd_(stderr_fd), name_(std::move(name)) {
    thread_ = std::thread([this] { Drain(); });
  }

  void Drain() {
    char buffer[8192];
    bool open[2] = {true, true};
    const int fds[2] = {stdout_fd_, stderr_fd_};
    while (open[0] || open[1]) {
      pollfd polled[2] = {{open[0] ? fds[0] : -1, POLLIN, 0}, {open[1] ? fds[1] : -1, POLLIN, 0}};
      if (poll(polled, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      for (int i = 0; i < 2; ++i) {
        if (polled[i].fd < 0 || polled[i].revents == 0) continue;
        const ssize_t n = read(fds[i], buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        absl::MutexLock lock(&mu_);
        if (n <= 0) {
          open[i] = false;
          continue;
        }
        std::string& text = i == 0 ? stdout_ : stderr_;
        text.append(buffer, static_cast<size_t>(n));
        if (text.size() > kKeepBytes) text.erase(0, text.size() - kKeepBytes);
      }
    }
    absl::MutexLock lock(&mu_);
    eof_ = true;
  }

  void Reap() {
    int wait_status = 0;
    pid_t reaped;
    do {
      reaped = waitpid(pid_, &wait_status, 0);
    } while (reaped < 0 && errno == EINTR);
    exit_status_ = ExitStatus::FromWaitStatus(wait_status);
    if (thread_.joinable()) thread_.join();
  }

  void KillAndReap() {
    kill(pid_, SIGKILL);
    Reap();
  }

  const pid_t pid_;
  const int stdout_fd_;
  const int stderr_fd_;
  const std::string name_;
  std::thread thread_;
  std::optional<ExitStatus> exit_status_;

  mutable absl::Mutex mu_;
  std::string stdout_ ABSL_GUARDED_BY(mu_);
  std::string stderr_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
};

// Whether a log of JSON lines (a worker's stderr) has `event` for the job `job_id`.
bool LogHasJobEvent(const std::string& log, std::string_view event, const std::string& job_id) {
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    const nlohmann::json json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (json.is_object() && json.value("event", "") == event &&
        json.value("job_id", "") == job_id) {
      return true;
    }
  }
  return false;
}

struct RunResult {
  ExitStatus status;
  std::string stdout_text;
  std::string stderr_text;
};

// Runs a command to its end, with a deadline.
absl::StatusOr<RunResult> RunCommand(std::vector<std::string> args, absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(std::move(args));
  if (!child.ok()) return child.status();
  absl::StatusOr<ExitStatus> status = (*child)->WaitForExit(timeout);
  if (!status.ok()) return status.status();
  return RunResult{*status, (*child)->StdoutText(), (*child)->StderrText()};
}

// ---------------------------------------------------------------------------------------------
// HTTP with the real curl.

struct HttpResponse {
  int code = 0;
  std::string body;
};

// GET `url` with curl into `out_path`; the status code and the body, whatever the code.
absl::StatusOr<HttpResponse> CurlGet(const std::string& url, const std::string& out_path,
                                     const std::vector<std::string>& extra_args = {}) {
  std::vector<std::string> args = {"curl", "-sS",    "--max-time", "20",
                                   "-o",   out_path, "-w",         "%{http_code}"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  args.push_back(url);
  absl::StatusOr<RunResult> run = RunCommand(std::move(args), absl::Seconds(30));
  if (!run.ok()) return run.status();
  if (!run->status.success()) {
    return absl::InternalError(
        absl::StrCat("curl ", url, ": ", run->status.ToString(), ": ", run->stderr_text));
  }
  HttpResponse response;
  if (!absl::SimpleAtoi(run->stdout_text, &response.code)) {
    return absl::InternalError(absl::StrCat("curl printed no status code: ", run->stdout_text));
  }
  absl::StatusOr<std::string> body = ReadFile(out_path);
  if (body.ok()) response.body = *std::move(body);
  return response;
}

// The value of query parameter `name` in `url`; empty when absent.
std::string QueryParam(const std::string& url, const std::string& name) {
  const size_t query = url.find('?');
  if (query == std::string::npos) return "";
  for (absl::string_view pair : absl::StrSplit(url.substr(query + 1), '&')) {
    if (absl::StartsWith(pair, absl::StrCat(name, "="))) {
      return std::string(pair.substr(name.size() + 1));
    }
  }
  return "";
}

// `url` with query parameter `name` set to `value`.
std::string WithQueryParam(const std::string& url, const std::string& name,
                           const std::string& value) {
  const std::string old_pair = absl::StrCat(name, "=", QueryParam(url, name));
  std::string result = url;
  const size_t at = result.find(old_pair, result.find('?'));
  if (at == std::string::npos) return result;
  result.replace(at, old_pair.size(), absl::StrCat(name, "=", value));
  return result;
}

// ---------------------------------------------------------------------------------------------
// CSV (RFC 4180), gzip and JSON Lines readers.

struct CsvField {
  std::string text;
  bool quoted = false;  // An empty quoted field is an empty string; an empty unquoted one NULL.
};
using CsvRecord = std::vector<CsvField>;

// Parses RFC 4180 text: records end with CRLF (the last one too), fields are separated by
// commas, a quoted field may hold commas, CR, LF and doubled quotes. Strict: a bare CR or LF
// outside quotes, a quote inside an unquoted field or text after a closing quote is an error.
absl::StatusOr<std::vector<CsvRecord>> ParseCsv(std::string_view text) {
  std::vector<CsvRecord> records;
  size_t i = 0;
  while (i < text.size()) {
    CsvRecord record;
    while (true) {
      CsvField field;
      if (i < text.size() && text[i] == '"') {
        field.quoted = true;
        ++i;
        while (true) {
          if (i >= text.size()) {
            return absl::InvalidArgumentError(
                absl::StrCat("record ", records.size(), ": unterminated quoted field"));
          }
          if (text[i] == '"') {
            if (i + 1 < text.size() && text[i + 1] == '"') {
              field.text.push_back('"');
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          field.text.push_back(text[i++]);
        }
      } else {
        while (i < text.size() && text[i] != ',' && text[i] != '\r' && text[i] != '\n') {
          if (text[i] == '"') {
            return absl::InvalidArgumentError(absl::StrCat(
                "record ", records.size(), ": a quote inside an unquoted field at byte ", i));
          }
          field.text.push_back(text[i++]);
        }
      }
      record.push_back(std::move(field));
      if (i < text.size() && text[i] == ',') {
        ++i;
        continue;
      }
      if (i + 1 < text.size() && text[i] == '\r' && text[i + 1] == '\n') {
        i += 2;
        break;
      }
      return absl::InvalidArgumentError(
          absl::StrCat("record ", records.size(), ": expected a comma or CRLF at byte ", i,
                       i < text.size() ? "" : " (the file does not end with CRLF)"));
    }
    records.push_back(std::move(record));
  }
  return records;
}

// Inflates gzip data made of one or more members; *members counts them.
absl::StatusOr<std::string> Gunzip(std::string_view data, int* members = nullptr) {
  std::string out;
  z_stream stream = {};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) return absl::InternalError("inflateInit2");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  int count = 0;
  char buffer[64 * 1024];
  while (true) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    const int rc = inflate(&stream, Z_NO_FLUSH);
    out.append(buffer, sizeof(buffer) - stream.avail_out);
    if (rc == Z_STREAM_END) {
      ++count;
      if (stream.avail_in == 0) break;
      inflateReset(&stream);  // Another member follows.
      continue;
    }
    if (rc != Z_OK) {
      const std::string message = stream.msg != nullptr ? stream.msg : "";
      inflateEnd(&stream);
      return absl::InvalidArgumentError(
          absl::StrCat("inflate: ", rc, " ", message, " after ", count, " members"));
    }
    if (stream.avail_in == 0 && stream.avail_out != 0) {
      inflateEnd(&stream);
      return absl::InvalidArgumentError(absl::StrCat("gzip data ends inside member ", count + 1));
    }
  }
  inflateEnd(&stream);
  if (members != nullptr) *members = count;
  return out;
}

// Splits JSON Lines text into its lines; every line must end with "\n".
absl::StatusOr<std::vector<std::string>> JsonLines(std::string_view text) {
  std::vector<std::string> lines;
  if (text.empty()) return lines;
  if (text.back() != '\n') return absl::InvalidArgumentError("the last line has no newline");
  text.remove_suffix(1);
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    lines.emplace_back(line);
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// The expected rows, straight from the SQLite file.

using SqlCell = std::optional<std::string>;  // nullopt: NULL.
using SqlRow = std::vector<SqlCell>;

// Runs `sql` on the database at `path` (read-only); every cell as SQLite's text of it.
absl::StatusOr<std::vector<SqlRow>> QuerySqlite(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    const std::string message = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("open ", path, ": ", message));
  }
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) != SQLITE_OK) {
    const std::string message = sqlite3_errmsg(db);
    sqlite3_close(db);
    return absl::InvalidArgumentError(absl::StrCat(sql, ": ", message));
  }
  std::vector<SqlRow> rows;
  int rc;
  while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
    SqlRow row;
    for (int c = 0; c < sqlite3_column_count(statement); ++c) {
      if (sqlite3_column_type(statement, c) == SQLITE_NULL) {
        row.emplace_back(std::nullopt);
      } else {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, c));
        row.emplace_back(
            std::string(text, static_cast<size_t>(sqlite3_column_bytes(statement, c))));
      }
    }
    rows.push_back(std::move(row));
  }
  const std::string message = sqlite3_errmsg(db);
  sqlite3_finalize(statement);
  sqlite3_close(db);
  if (rc != SQLITE_DONE) return absl::InternalError(absl::StrCat(sql, ": ", message));
  return rows;
}

std::string Show(const SqlCell& cell) { return cell.has_value() ? "'" + *cell + "'" : "NULL"; }
std::string Show(const CsvField& field) {
  return absl::StrCat(field.quoted ? "quoted " : "unquoted ", "'", field.text, "'");
}

// Compares CSV records (without the header) with rows from SQLite: the same number, and cell
// by cell the same text; NULL must be an empty unquoted field and an empty string a quoted one.
::testing::AssertionResult SameRows(const std::vector<CsvRecord>& records,
                                    const std::vector<SqlRow>& rows) {
  if (records.size() != rows.size()) {
    return ::testing::AssertionFailure()
           << records.size() << " records in the file, " << rows.size() << " rows from SQLite";
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    if (records[r].size() != rows[r].size()) {
      return ::testing::AssertionFailure() << "record " << r << " has " << records[r].size()
                                           << " fields, want " << rows[r].size();
    }
    for (size_t c = 0; c < rows[r].size(); ++c) {
      const CsvField& field = records[r][c];
      const SqlCell& cell = rows[r][c];
      const bool same = cell.has_value() ? field.text == *cell && (!cell->empty() || field.quoted)
                                         : field.text.empty() && !field.quoted;
      if (!same) {
        return ::testing::AssertionFailure()
               << "record " << r << " (id " << Show(rows[r][0]) << ") column " << c << ": file "
               << Show(field) << ", SQLite " << Show(cell);
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// Compares one JSON Lines object with an SQLite row of the export's columns (catalog types).
::testing::AssertionResult SameJsonRow(const google::protobuf::Struct& object,
                                       const std::vector<std::string>& fields,
                                       const catalog::Entity& entity, const SqlRow& row) {
  if (object.fields_size() != static_cast<int>(fields.size())) {
    std::vector<std::string> keys;
    for (const auto& [key, value] : object.fields()) keys.push_back(key);
    std::sort(keys.begin(), keys.end());
    return ::testing::AssertionFailure() << "keys [" << absl::StrJoin(keys, ", ") << "], want ["
                                         << absl::StrJoin(fields, ", ") << "]";
  }
  for (size_t c = 0; c < fields.size(); ++c) {
    auto found = object.fields().find(fields[c]);
    if (found == object.fields().end()) {
      return ::testing::AssertionFailure() << "no key " << fields[c];
    }
    const google::protobuf::Value& value = found->second;
    const SqlCell& cell = row[c];
    std::string actual;
    bool same;
    if (!cell.has_value()) {
      same = value.kind_case() == google::protobuf::Value::kNullValue;
    } else {
      switch (catalog::FindField(entity, fields[c])->type) {
        case exportjobs::v1::FIELD_TYPE_INTEGER:
          same = value.kind_case() == google::protobuf::Value::kNumberValue &&
                 absl::StrCat(static_cast<int64_t>(value.number_value())) == *cell &&
                 static_cast<double>(static_cast<int64_t>(value.number_value())) ==
                     value.number_value();
          break;
        case exportjobs::v1::FIELD_TYPE_NUMBER: {
          double expected = 0;
          same = value.kind_case() == google::protobuf::Value::kNumberValue &&
                 absl::SimpleAtod(*cell, &expected) && expected == value.number_value();
          break;
        }
        case exportjobs::v1::FIELD_TYPE_BOOLEAN:
          same = value.kind_case() == google::protobuf::Value::kBoolValue &&
                 value.bool_value() == (*cell != "0");
          break;
        default:
          same = value.kind_case() == google::protobuf::Value::kStringValue &&
                 value.string_value() == *cell;
          break;
      }
    }
    if (!same) {
      return ::testing::AssertionFailure()
             << "id " << Show(row[0]) << " key " << fields[c] << ": JSON "
             << value.ShortDebugString() << ", SQLite " << Show(cell);
    }
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// gRPC helpers.

google::protobuf::Struct Filters(const std::string& json) {
  google::protobuf::Struct filters;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &filters);
  EXPECT_TRUE(status.ok()) << json << ": " << status;
  return filters;
}

bool IsTerminal(ExportJobStatus status) {
  return status == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED ||
         status == exportjobs::v1::EXPORT_JOB_STATUS_FAILED ||
         status == exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED;
}

std::string Describe(const ExportJob& job) {
  return absl::StrCat(
      "job ", job.id(), " ", exportjobs::v1::ExportJobStatus_Name(job.status()), " revision ",
      job.revision(), " attempt ", job.attempt(), " progress {", job.progress().ShortDebugString(),
      "} records ", job.record_count(), " parts ", job.file_parts(),
      job.error_message().empty() ? "" : absl::StrCat(" error '", job.error_message(), "'"));
}

// One WatchExportJob stream, read synchronously; its deadline bounds every wait on it.
class JobWatch {
 public:
  JobWatch(ExportService::Stub* stub, const std::string& id, absl::Duration timeout) {
    SetDeadline(context_, timeout);
    WatchExportJobRequest request;
    request.set_id(id);
    reader_ = stub->WatchExportJob(&context_, request);
  }

  ~JobWatch() {
    if (finished_) return;
    context_.TryCancel();
    ExportJobEvent event;
    while (reader_->Read(&event)) {
    }
    [[maybe_unused]] grpc::Status status = reader_->Finish();
  }

  // Reads events until the job satisfies `done`; returns that state. An error when the stream
  // ends (terminal state, deadline) before.
  absl::StatusOr<ExportJob> Until(const std::function<bool(const ExportJob&)>& done,
                                  const std::string& what) {
    ExportJobEvent event;
    while (!finished_ && reader_->Read(&event)) {
      seen_.push_back(event.job());
      if (done(event.job())) return event.job();
    }
    if (!finished_) {
      status_ = reader_->Finish();
      finished_ = true;
    }
    return absl::DeadlineExceededError(
        absl::StrCat("the watch ended with ", StatusText(status_), " before ", what,
                     seen_.empty() ? "" : absl::StrCat("; last: ", Describe(seen_.back()))));
  }

  absl::StatusOr<ExportJob> UntilTerminal() {
    return Until([](const ExportJob& job) { return IsTerminal(job.status()); }, "a final state");
  }

  const std::vector<ExportJob>& seen() const { return seen_; }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<ExportJobEvent>> reader_;
  std::vector<ExportJob> seen_;
  bool finished_ = false;
  grpc::Status status_;
};

// ---------------------------------------------------------------------------------------------
// The fixture: a temporary directory with a demo database, one server, any number of workers.

class ExportFlowTest : public ::testing::Test {
 protected:
  void TearDown() override {
    // Workers first: on SIGTERM they release their jobs to the server.
    for (auto& [id, worker] : workers_) {
      if (!worker->running()) continue;
      absl::StatusOr<ExitStatus> exit = worker->Terminate(kProcessTimeout);
      EXPECT_TRUE(exit.ok() && exit->success())
          << "worker " << id
          << " after SIGTERM: " << (exit.ok() ? exit->ToString() : exit.status().ToString())
          << "\nstderr:\n"
          << worker->StderrText();
    }
    if (server_ != nullptr && server_->running()) {
      absl::StatusOr<ExitStatus> exit = server_->Terminate(kProcessTimeout);
      EXPECT_TRUE(exit.ok() && exit->success())
          << "server after SIGTERM: " << (exit.ok() ? exit->ToString() : exit.status().ToString())
          << "\nstderr:\n"
          << server_->StderrTail();
    }
  }

  std::string Path(const std::string& name) const { return absl::StrCat(dir_.path(), "/", name); }

  // `export-worker seed-demo` into demo.db.
  absl::Status SeedDemo(int accounts) {
    db_path_ = Path("demo.db");
    absl::StatusOr<RunResult> run =
        RunCommand({EXPORT_WORKER_PATH, "seed-demo", absl::StrCat("--source=", db_path_),
                    absl::StrCat("--accounts=", accounts), "--seed=7"},
                   kProcessTimeout);
    if (!run.ok()) return run.status();
    if (!run->status.success()) {
      return absl::InternalError(absl::StrCat("seed-demo: ", run->status.ToString(), "\n",
                                              run->stdout_text, run->stderr_text));
    }
    return absl::OkStatus();
  }

  absl::Status StartServer(std::vector<std::string> extra_args = {}) {
    ServerProcess::Options options;
    options.binary = EXPORT_SERVER_PATH;
    options.data_dir = Path("server");
    options.extra_args = std::move(extra_args);
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(options);
    if (!server.ok()) return server.status();
    server_ = *std::move(server);
    // The server prints "http listening on HOST:PORT" on the line before the gRPC one.
    for (absl::string_view line : absl::StrSplit(server_->StdoutText(), '\n')) {
      if (absl::ConsumePrefix(&line, "http listening on ")) http_address_ = std::string(line);
    }
    if (http_address_.empty()) {
      return absl::InternalError(
          absl::StrCat("no 'http listening on' line:\n", server_->StdoutText()));
    }
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ =
        grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args);
    stub_ = ExportService::NewStub(channel_);
    return absl::OkStatus();
  }

  // Starts `export-worker` and waits for its ready line.
  absl::StatusOr<ChildProcess*> StartWorker(const std::string& id) {
    absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start({
        EXPORT_WORKER_PATH,
        absl::StrCat("--server=", server_->address()),
        absl::StrCat("--source=", db_path_),
        absl::StrCat("--worker_id=", id),
        "--concurrency=2",
        "--heartbeat_interval=200ms",
        "--claim_wait=5s",
        "--rpc_timeout=10s",
        absl::StrCat("--work_dir=", dir_.path()),
    });
    if (!child.ok()) return child.status();
    ChildProcess* worker = child->get();
    workers_.emplace_back(id, *std::move(child));
    if (!worker->AwaitLine(absl::StrCat("export-worker ", id, " ready"), kProcessTimeout)) {
      return absl::DeadlineExceededError(
          absl::StrCat("worker ", id, " printed no ready line; stdout:\n", worker->StdoutText(),
                       "\nstderr:\n", worker->StderrText()));
    }
    return worker;
  }

  // Everything the workers and the server said, for failure messages.
  std::string Logs() const {
    std::string logs;
    for (const auto& [id, worker] : workers_) {
      absl::StrAppend(&logs, "--- worker ", id, " stderr:\n", worker->StderrText());
    }
    if (server_ != nullptr) absl::StrAppend(&logs, "--- server stderr:\n", server_->StderrTail());
    return logs;
  }

  absl::StatusOr<ExportJob> Create(const CreateExportJobRequest& request) {
    grpc::ClientContext context;
    SetDeadline(context);
    ExportJob job;
    grpc::Status status = stub_->CreateExportJob(&context, request, &job);
    if (!status.ok()) return absl::InternalError(absl::StrCat("Create: ", StatusText(status)));
    return job;
  }

  // Watches the job until it is terminal; an error unless it COMPLETED.
  absl::StatusOr<ExportJob> AwaitCompleted(const std::string& id) {
    JobWatch watch(stub_.get(), id, kJobTimeout);
    absl::StatusOr<ExportJob> job = watch.UntilTerminal();
    if (!job.ok()) return job.status();
    if (job->status() != exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) {
      return absl::InternalError(absl::StrCat("ended as ", Describe(*job), "\n", Logs()));
    }
    return job;
  }

  // DownloadExport{id, part} over gRPC: all the bytes, or the call's error.
  absl::StatusOr<std::string> DownloadPart(const std::string& id, int part) {
    grpc::ClientContext context;
    SetDeadline(context, absl::Seconds(20));
    DownloadExportRequest request;
    request.set_id(id);
    request.set_part(part);
    std::unique_ptr<grpc::ClientReader<DownloadExportResponse>> reader =
        stub_->DownloadExport(&context, request);
    std::string bytes;
    DownloadExportResponse response;
    while (reader->Read(&response)) bytes += response.chunk();
    grpc::Status status = reader->Finish();
    if (!status.ok()) {
      return absl::Status(
          static_cast<absl::StatusCode>(status.error_code()),
          absl::StrCat("DownloadExport ", id, " part ", part, ": ", StatusText(status)));
    }
    return bytes;
  }

  absl::Status Delete(const std::string& id) {
    grpc::ClientContext context;
    SetDeadline(context);
    DeleteExportJobRequest request;
    request.set_id(id);
    google::protobuf::Empty empty;
    grpc::Status status = stub_->DeleteExportJob(&context, request, &empty);
    if (!status.ok()) return absl::InternalError(absl::StrCat("Delete: ", StatusText(status)));
    return absl::OkStatus();
  }

  // Downloads the job's download_url with curl; the body must come with 200.
  absl::StatusOr<std::string> CurlFile(const ExportJob& job) {
    absl::StatusOr<HttpResponse> response =
        CurlGet(job.download_url(), Path(absl::StrCat("download-", ++downloads_)));
    if (!response.ok()) return response.status();
    if (response->code != 200) {
      return absl::InternalError(absl::StrCat("GET ", job.download_url(), ": HTTP ", response->code,
                                              ": ", response->body));
    }
    return response->body;
  }

  // A completed small accounts job, for the URL tests.
  absl::StatusOr<ExportJob> CompletedAccountsJob() {
    CreateExportJobRequest request;
    request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
    for (const char* field : {"id", "name", "country"}) request.add_fields(field);
    absl::StatusOr<ExportJob> created = Create(request);
    if (!created.ok()) return created.status();
    return AwaitCompleted(created->id());
  }

  TempDir dir_;
  std::string db_path_;
  std::unique_ptr<ServerProcess> server_;
  std::string http_address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<ExportService::Stub> stub_;
  std::vector<std::pair<std::string, std::unique_ptr<ChildProcess>>> workers_;
  int downloads_ = 0;
};

const std::vector<std::string> kAccountFields = {
    "id", "name", "domain", "industry", "employee_count", "country", "created_at"};
const std::string kAccountColumns =
    "id, name, domain, industry, employee_count, country, created_at";

// ---------------------------------------------------------------------------------------------
// 1. One filtered export, downloaded with curl, equals the query run on the SQLite file.

TEST_F(ExportFlowTest, FilteredExportDownloadedWithCurlEqualsTheSqliteQuery) {
  ASSERT_OK(SeedDemo(2000));
  ASSERT_OK(StartServer());
  ASSERT_OK(StartWorker("w1"));

  CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  for (const std::string& field : kAccountFields) request.add_fields(field);
  *request.mutable_filters() =
      Filters(R"({"country": {"in": ["US", "DE"]}, "employee_count": {"gte": 50}})");
  request.set_format(exportjobs::v1::EXPORT_FORMAT_CSV);
  ASSERT_OK_AND_ASSIGN(const ExportJob created, Create(request));
  ASSERT_OK_AND_ASSIGN(const ExportJob job, AwaitCompleted(created.id()));

  EXPECT_EQ(job.attempt(), 1);
  EXPECT_EQ(job.file_parts(), 1);
  EXPECT_TRUE(absl::StartsWith(
      job.download_url(),
      absl::StrCat("http://", http_address_, "/v1/export-jobs/", job.id(), "/file?")))
      << job.download_url() << " (http address " << http_address_ << ")";
  EXPECT_FALSE(QueryParam(job.download_url(), "expires").empty()) << job.download_url();
  EXPECT_FALSE(QueryParam(job.download_url(), "sig").empty()) << job.download_url();

  ASSERT_OK_AND_ASSIGN(const std::string file, CurlFile(job));
  EXPECT_EQ(static_cast<int64_t>(file.size()), job.file_size_bytes());
  ASSERT_OK_AND_ASSIGN(std::vector<CsvRecord> records, ParseCsv(file));
  ASSERT_FALSE(records.empty());
  std::vector<std::string> header;
  for (const CsvField& field : records.front()) header.push_back(field.text);
  EXPECT_EQ(header, kAccountFields);
  records.erase(records.begin());
  EXPECT_EQ(static_cast<int64_t>(records.size()), job.record_count());

  ASSERT_OK_AND_ASSIGN(const std::vector<SqlRow> rows,
                       QuerySqlite(db_path_, absl::StrCat("SELECT ", kAccountColumns,
                                                          " FROM accounts WHERE country IN "
                                                          "('US','DE') AND employee_count >= 50 "
                                                          "ORDER BY id")));
  ASSERT_OK_AND_ASSIGN(const std::vector<SqlRow> all,
                       QuerySqlite(db_path_, "SELECT count(*) FROM accounts"));
  // The filter selects some accounts, not none and not all.
  EXPECT_GT(rows.size(), 50u);
  EXPECT_LT(static_cast<int64_t>(rows.size()), std::stoll(*all[0][0]));
  EXPECT_TRUE(SameRows(records, rows));

  // Every row satisfies the filter, read from the file itself.
  for (const CsvRecord& record : records) {
    int64_t employees = 0;
    ASSERT_TRUE(absl::SimpleAtoi(record[4].text, &employees)) << "id " << record[0].text;
    EXPECT_GE(employees, 50) << "id " << record[0].text;
    EXPECT_TRUE(record[5].text == "US" || record[5].text == "DE")
        << "id " << record[0].text << " country " << record[5].text;
  }

  // A Range request gets the same bytes.
  ASSERT_OK_AND_ASSIGN(const HttpResponse range,
                       CurlGet(job.download_url(), Path("range"), {"-r", "10-99"}));
  EXPECT_EQ(range.code, 206);
  EXPECT_EQ(range.body, file.substr(10, 90));
}

// The binaries run on the allocator the build links into them (EXPORTD_MALLOC: jemalloc unless
// it is a sanitizer build), and say which in their starting lines.
TEST_F(ExportFlowTest, ServerAndWorkerRunOnTheBuildsAllocator) {
  ASSERT_OK(SeedDemo(10));
  ASSERT_OK(StartServer());
  ASSERT_OK_AND_ASSIGN(ChildProcess* const worker, StartWorker("w1"));
  // Log lines are written by a background thread: a clean exit has written them all.
  ASSERT_OK_AND_ASSIGN(const ExitStatus worker_exit, worker->Terminate(kProcessTimeout));
  EXPECT_TRUE(worker_exit.success()) << worker_exit.ToString();
  ASSERT_OK_AND_ASSIGN(const ExitStatus server_exit, server_->Terminate(kProcessTimeout));
  EXPECT_TRUE(server_exit.success()) << server_exit.ToString();
  const std::string malloc_field = absl::StrCat("\"malloc\":\"", EXPORTD_BINARY_MALLOC);
  auto starting_line = [](const std::string& log, absl::string_view event) -> std::string {
    for (absl::string_view line : absl::StrSplit(log, '\n')) {
      if (absl::StrContains(line, absl::StrCat("\"event\":\"", event, "\""))) {
        return std::string(line);
      }
    }
    return "(no " + std::string(event) + " line)";
  };
  EXPECT_THAT(starting_line(server_->StderrTail(), "server.starting"),
              ::testing::HasSubstr(malloc_field));
  EXPECT_THAT(starting_line(worker->StderrText(), "worker.starting"),
              ::testing::HasSubstr(malloc_field));
}

// ---------------------------------------------------------------------------------------------
// 2. Multi-part files: the whole file is the parts joined in order, for csv and jsonl + gzip.

TEST_F(ExportFlowTest, MultiPartCsvAndGzipJsonlReassemble) {
  ASSERT_OK(SeedDemo(2000));
  ASSERT_OK(StartServer());
  ASSERT_OK(StartWorker("w1"));

  CreateExportJobRequest csv_request;
  csv_request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  for (const std::string& field : kAccountFields) csv_request.add_fields(field);
  csv_request.set_format(exportjobs::v1::EXPORT_FORMAT_CSV);
  csv_request.set_compression(exportjobs::v1::COMPRESSION_NONE);
  csv_request.set_part_size_bytes(4096);
  ASSERT_OK_AND_ASSIGN(const ExportJob csv_created, Create(csv_request));

  const std::vector<std::string> json_fields = {
      "id", "name", "country", "employee_count", "is_customer", "annual_revenue", "created_at"};
  CreateExportJobRequest json_request;
  json_request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  for (const std::string& field : json_fields) json_request.add_fields(field);
  *json_request.mutable_filters() = Filters(R"({"country": {"ne": "US"}})");
  json_request.set_format(exportjobs::v1::EXPORT_FORMAT_JSONL);
  json_request.set_compression(exportjobs::v1::COMPRESSION_GZIP);
  json_request.set_part_size_bytes(4096);
  ASSERT_OK_AND_ASSIGN(const ExportJob json_created, Create(json_request));

  // --- csv ---
  {
    ASSERT_OK_AND_ASSIGN(const ExportJob job, AwaitCompleted(csv_created.id()));
    EXPECT_GT(job.file_parts(), 1);
    ASSERT_EQ(job.parts_size(), job.file_parts());
    ASSERT_OK_AND_ASSIGN(const std::string file, CurlFile(job));
    EXPECT_EQ(static_cast<int64_t>(file.size()), job.file_size_bytes());
    ASSERT_OK_AND_ASSIGN(const std::string whole_grpc, DownloadPart(job.id(), 0));
    EXPECT_TRUE(whole_grpc == file) << "DownloadExport part 0 differs from the HTTP file";

    const std::string header = absl::StrCat(absl::StrJoin(kAccountFields, ","), "\r\n");
    std::string joined;
    int64_t records_in_parts = 0;
    for (int n = 1; n <= job.file_parts(); ++n) {
      SCOPED_TRACE(absl::StrCat("part ", n));
      ASSERT_OK_AND_ASSIGN(const std::string part, DownloadPart(job.id(), n));
      const exportjobs::v1::ExportPart& manifest = job.parts(n - 1);
      EXPECT_EQ(manifest.part_number(), n);
      EXPECT_EQ(static_cast<int64_t>(part.size()), manifest.size_bytes());
      // Each part is whole records; only part 1 starts with the header.
      ASSERT_OK_AND_ASSIGN(const std::vector<CsvRecord> records, ParseCsv(part));
      EXPECT_EQ(absl::StartsWith(part, header), n == 1);
      const int64_t data_records = static_cast<int64_t>(records.size()) - (n == 1 ? 1 : 0);
      EXPECT_EQ(data_records, manifest.record_count());
      if (n > 1) {
        ASSERT_FALSE(records.empty());
        int64_t id = 0;
        EXPECT_TRUE(absl::SimpleAtoi(records[0][0].text, &id)) << records[0][0].text;
      }
      // A part is about part_size_bytes: it ends at the first record boundary after 4096.
      if (n < job.file_parts()) {
        EXPECT_GE(part.size(), 4096u);
      }
      records_in_parts += manifest.record_count();
      joined += part;
    }
    EXPECT_EQ(records_in_parts, job.record_count());
    EXPECT_TRUE(joined == file) << "the parts joined (" << joined.size()
                                << " bytes) differ from the file (" << file.size() << " bytes)";

    ASSERT_OK_AND_ASSIGN(std::vector<CsvRecord> records, ParseCsv(file));
    ASSERT_FALSE(records.empty());
    records.erase(records.begin());
    EXPECT_EQ(static_cast<int64_t>(records.size()), job.record_count());
    ASSERT_OK_AND_ASSIGN(const std::vector<SqlRow> rows,
                         QuerySqlite(db_path_, absl::StrCat("SELECT ", kAccountColumns,
                                                            " FROM accounts ORDER BY id")));
    EXPECT_TRUE(SameRows(records, rows));
  }

  // --- jsonl + gzip ---
  {
    ASSERT_OK_AND_ASSIGN(const ExportJob job, AwaitCompleted(json_created.id()));
    EXPECT_GT(job.file_parts(), 1);
    ASSERT_EQ(job.parts_size(), job.file_parts());
    ASSERT_OK_AND_ASSIGN(const std::string file, CurlFile(job));
    EXPECT_EQ(static_cast<int64_t>(file.size()), job.file_size_bytes());

    std::string joined;
    for (int n = 1; n <= job.file_parts(); ++n) {
      SCOPED_TRACE(absl::StrCat("part ", n));
      ASSERT_OK_AND_ASSIGN(const std::string part, DownloadPart(job.id(), n));
      EXPECT_EQ(static_cast<int64_t>(part.size()), job.parts(n - 1).size_bytes());
      // Each part alone is one complete gzip member of whole lines.
      int members = 0;
      ASSERT_OK_AND_ASSIGN(const std::string text, Gunzip(part, &members));
      EXPECT_EQ(members, 1);
      ASSERT_OK_AND_ASSIGN(const std::vector<std::string> lines, JsonLines(text));
      EXPECT_EQ(static_cast<int64_t>(lines.size()), job.parts(n - 1).record_count());
      joined += part;
    }
    EXPECT_TRUE(joined == file) << "the parts joined (" << joined.size()
                                << " bytes) differ from the file (" << file.size() << " bytes)";

    int members = 0;
    ASSERT_OK_AND_ASSIGN(const std::string text, Gunzip(file, &members));
    EXPECT_EQ(members, job.file_parts());
    ASSERT_OK_AND_ASSIGN(const std::vector<std::string> lines, JsonLines(text));
    EXPECT_EQ(static_cast<int64_t>(lines.size()), job.record_count());

    // NULL countries are "not US" too (docs/filters.md: ne matches NULL).
    ASSERT_OK_AND_ASSIGN(
        const std::vector<SqlRow> rows,
        QuerySqlite(db_path_,
                    absl::StrCat("SELECT ", absl::StrJoin(json_fields, ", "),
                                 " FROM accounts WHERE country IS NOT 'US' ORDER BY id")));
    ASSERT_EQ(lines.size(), rows.size());
    EXPECT_TRUE(std::any_of(rows.begin(), rows.end(), [](const SqlRow& row) { return !row[2]; }))
        << "the demo data has no account without a country";
    const catalog::Entity& accounts = *catalog::FindEntity(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
    for (size_t i = 0; i < lines.size(); ++i) {
      google::protobuf::Struct object;
      const auto parsed = google::protobuf::util::JsonStringToMessage(lines[i], &object);
      ASSERT_TRUE(parsed.ok()) << "line " << i << ": " << parsed << ": " << lines[i];
      ASSERT_TRUE(SameJsonRow(object, json_fields, accounts, rows[i]))
          << "line " << i << ": " << lines[i];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 3. A worker that dies mid-export (kill -9) or stops (SIGTERM): another worker completes the
// job, after the lease expired or at once after the release.

// The history of a watched job for failure messages: each change of status or attempt, one a
// line (progress-only changes left out).
std::string History(const std::vector<ExportJob>& seen) {
  std::string history;
  for (size_t i = 0; i < seen.size(); ++i) {
    const ExportJob& job = seen[i];
    if (i > 0 && i + 1 < seen.size() && job.status() == seen[i - 1].status() &&
        job.attempt() == seen[i - 1].attempt()) {
      continue;
    }
    const absl::Time updated = absl::FromUnixSeconds(job.updated_at().seconds()) +
                               absl::Nanoseconds(job.updated_at().nanos());
    absl::StrAppend(&history, "  ", absl::FormatTime("%H:%M:%E3S", updated, absl::UTCTimeZone()),
                    " ", Describe(job), "\n");
  }
  return history;
}

bool InProgress(const ExportJob& job) {
  return job.status() == exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING &&
         job.progress().records_processed() > 0;
}

const std::vector<std::string> kActivityFields = {
    "id", "account_id", "person_id", "type", "subject", "duration_seconds", "occurred_at"};

class WorkerLossTest : public ExportFlowTest {
 protected:
  static constexpr int kAccounts = 400;
  static constexpr size_t kActivities = 20 * kAccounts;

  // An export of every activity (8,000) in 1 KiB parts: hundreds of uploads, each synced by the
  // server, so it runs for seconds.
  absl::StatusOr<ExportJob> CreateSlowExport() {
    CreateExportJobRequest request;
    request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACTIVITIES);
    for (const std::string& field : kActivityFields) request.add_fields(field);
    request.set_format(exportjobs::v1::EXPORT_FORMAT_CSV);
    request.set_part_size_bytes(1024);
    return Create(request);
  }

  // The completed job's file, downloaded with curl, is every activity.
  void ExpectAllActivities(const ExportJob& job) {
    EXPECT_GT(job.file_parts(), 100);
    ASSERT_OK_AND_ASSIGN(const std::string file, CurlFile(job));
    EXPECT_EQ(static_cast<int64_t>(file.size()), job.file_size_bytes());
    ASSERT_OK_AND_ASSIGN(std::vector<CsvRecord> records, ParseCsv(file));
    ASSERT_FALSE(records.empty());
    records.erase(records.begin());
    EXPECT_EQ(static_cast<int64_t>(records.size()), job.record_count());
    ASSERT_OK_AND_ASSIGN(
        const std::vector<SqlRow> rows,
        QuerySqlite(db_path_, absl::StrCat("SELECT ", absl::StrJoin(kActivityFields, ", "),
                                           " FROM activities ORDER BY id")));
    EXPECT_EQ(rows.size(), kActivities);
    EXPECT_TRUE(SameRows(records, rows));
  }
};

// Worker A is killed with SIGKILL once the job shows progress; worker B, started after the
// kill, completes the job once A's lease has expired. A's other job loop has a long-poll claim
// waiting in the server when A dies: that claim must not be handed the job.
TEST_F(WorkerLossTest, JobOfAWorkerKilledMidExportIsCompletedByAnother) {
  ASSERT_OK(SeedDemo(kAccounts));
  ASSERT_OK(StartServer({"--lease_duration=2s", "--retry_backoff=100ms"}));
  ASSERT_OK_AND_ASSIGN(ChildProcess* const worker_a, StartWorker("worker-a"));
  ASSERT_OK_AND_ASSIGN(const ExportJob created, CreateSlowExport());

  JobWatch watch(stub_.get(), created.id(), kJobTimeout);
  ASSERT_OK_AND_ASSIGN(
      const ExportJob in_progress,
      watch.Until([](const ExportJob& job) { return InProgress(job) || IsTerminal(job.status()); },
                  "progress"));
  ASSERT_EQ(in_progress.status(), exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING)
      << "the export ended before worker A could be killed: " << Describe(in_progress);
  EXPECT_EQ(in_progress.attempt(), 1);
  worker_a->Kill9();

  ASSERT_OK_AND_ASSIGN(ChildProcess* const worker_b, StartWorker("worker-b"));
  ASSERT_OK_AND_ASSIGN(const ExportJob job, watch.UntilTerminal());
  ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << Describe(job) << "\n"
                                                                       << Logs();
  // One claim by A, one by B: the attempt lost with A counts, nothing else does.
  EXPECT_EQ(job.attempt(), 2) << "history:\n" << History(watch.seen()) << Logs();
  EXPECT_TRUE(LogHasJobEvent(worker_b->StderrText(), "job.claimed", job.id())) << Logs();
  // B's claim came after A's lease had expired: at least the lease duration after the
  // progress that A reported last.
  const ExportJob* last_of_a = nullptr;
  for (const ExportJob& seen : watch.seen()) {
    if (seen.attempt() == 1 && seen.status() == exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING) {
      last_of_a = &seen;
    }
  }
  ASSERT_NE(last_of_a, nullptr);
  EXPECT_GE(
      job.started_at().seconds() * 1000 + job.started_at().nanos() / 1000000,
      last_of_a->updated_at().seconds() * 1000 + last_of_a->updated_at().nanos() / 1000000 + 2000)
      << "history:\n"
      << History(watch.seen());
  ExpectAllActivities(job);
}

// Worker A gets SIGTERM once the job shows progress: it releases the job and exits 0, and
// worker B claims the job at once — long before the lease (the default 30 s) would have
// expired — and completes it. A's other job loop has a long-poll claim waiting in the server
// when A stops: that claim must not be handed the released job.
TEST_F(WorkerLossTest, JobOfAWorkerStoppedWithSigtermIsReleasedAndCompletedByAnother) {
  ASSERT_OK(SeedDemo(kAccounts));
  ASSERT_OK(StartServer());
  ASSERT_OK_AND_ASSIGN(ChildProcess* const worker_a, StartWorker("worker-a"));
  ASSERT_OK_AND_ASSIGN(const ExportJob created, CreateSlowExport());
  {
    JobWatch watch(stub_.get(), created.id(), kJobTimeout);
    ASSERT_OK_AND_ASSIGN(
        const ExportJob in_progress,
        watch.Until(
            [](const ExportJob& job) { return InProgress(job) || IsTerminal(job.status()); },
            "progress"));
    ASSERT_EQ(in_progress.status(), exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING)
        << "the export ended before worker A could be stopped: " << Describe(in_progress);
  }
  absl::StatusOr<ExitStatus> exit = worker_a->Terminate(kProcessTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString() << "\n" << worker_a->StderrText();
  EXPECT_TRUE(LogHasJobEvent(worker_a->StderrText(), "job.released", created.id()))
      << worker_a->StderrText();
  ASSERT_OK(StartWorker("worker-b"));

  // B makes progress within 10 s (a third of the lease A held).
  {
    JobWatch watch(stub_.get(), created.id(), absl::Seconds(10));
    absl::StatusOr<ExportJob> resumed = watch.Until(InProgress, "worker B's progress");
    ASSERT_TRUE(resumed.ok()) << resumed.status() << "\nhistory:\n"
                              << History(watch.seen()) << Logs();
  }
  JobWatch watch(stub_.get(), created.id(), kJobTimeout);
  ASSERT_OK_AND_ASSIGN(const ExportJob job, watch.UntilTerminal());
  ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << Describe(job) << "\n"
                                                                       << Logs();
  // A release does not use an attempt: B's claim is the only one that counts.
  EXPECT_EQ(job.attempt(), 1) << Describe(job);
  ExpectAllActivities(job);
}

// ---------------------------------------------------------------------------------------------
// 4. URLs: forged and tampered signatures, unknown jobs, expiry.

TEST_F(ExportFlowTest, ForgedOrTamperedUrlsAreRefusedWith403) {
  ASSERT_OK(SeedDemo(200));
  ASSERT_OK(StartServer());
  ASSERT_OK(StartWorker("w1"));
  ASSERT_OK_AND_ASSIGN(const ExportJob job, CompletedAccountsJob());
  const std::string& url = job.download_url();
  ASSERT_OK_AND_ASSIGN(const HttpResponse good, CurlGet(url, Path("good")));
  EXPECT_EQ(good.code, 200) << good.body;

  // One hex digit of the signature flipped.
  std::string sig = QueryParam(url, "sig");
  ASSERT_FALSE(sig.empty()) << url;
  const size_t digit = sig.size() / 2;
  sig[digit] = sig[digit] == '0' ? '1' : '0';
  ASSERT_OK_AND_ASSIGN(const HttpResponse forged,
                       CurlGet(WithQueryParam(url, "sig", sig), Path("forged")));
  EXPECT_EQ(forged.code, 403) << forged.body;

  // A later expiry with the old signature (the signature covers the expiry).
  int64_t expires = 0;
  ASSERT_TRUE(absl::SimpleAtoi(QueryParam(url, "expires"), &expires)) << url;
  ASSERT_OK_AND_ASSIGN(
      const HttpResponse extended,
      CurlGet(WithQueryParam(url, "expires", absl::StrCat(expires + 3600)), Path("extended")));
  EXPECT_EQ(extended.code, 403) << extended.body;

  // No signature at all.
  const std::string unsigned_url = url.substr(0, url.find("&sig="));
  ASSERT_OK_AND_ASSIGN(const HttpResponse missing, CurlGet(unsigned_url, Path("missing")));
  EXPECT_EQ(missing.code, 403) << unsigned_url << ": " << missing.body;

  // The file's URL signature does not open a part (signatures are per part).
  std::string part_url = url;
  const std::string file_path = absl::StrCat("/v1/export-jobs/", job.id(), "/file?");
  ASSERT_NE(part_url.find(file_path), std::string::npos) << url;
  part_url.replace(part_url.find(file_path), file_path.size(),
                   absl::StrCat("/v1/export-jobs/", job.id(), "/parts/1?"));
  ASSERT_OK_AND_ASSIGN(const HttpResponse part, CurlGet(part_url, Path("part")));
  EXPECT_EQ(part.code, 403) << part_url << ": " << part.body;
}

// A URL for a job the server does not know. A validly signed URL of a deleted job is 404
// (unknown job). A URL whose job id was changed is 403: the signature covers the job id, so the
// server cannot tell it from a forgery — and must not reveal whether such a job exists.
TEST_F(ExportFlowTest, UrlsOfUnknownJobsAreRefused) {
  ASSERT_OK(SeedDemo(200));
  ASSERT_OK(StartServer());
  ASSERT_OK(StartWorker("w1"));
  ASSERT_OK_AND_ASSIGN(const ExportJob kept, CompletedAccountsJob());
  ASSERT_OK_AND_ASSIGN(const ExportJob deleted, CompletedAccountsJob());
  ASSERT_OK(Delete(deleted.id()));

  ASSERT_OK_AND_ASSIGN(const HttpResponse gone_job,
                       CurlGet(deleted.download_url(), Path("deleted")));
  EXPECT_EQ(gone_job.code, 404) << deleted.download_url() << ": " << gone_job.body;

  // Another, well-formed job id in a valid URL: the deleted job's id in the kept job's URL, and
  // the kept job's id with its last character changed.
  std::string other_id = kept.id();
  other_id.back() = other_id.back() == '0' ? '1' : '0';
  for (const std::string& id : {deleted.id(), other_id}) {
    std::string url = kept.download_url();
    url.replace(url.find(kept.id()), kept.id().size(), id);
    ASSERT_OK_AND_ASSIGN(const HttpResponse response, CurlGet(url, Path("other-id")));
    EXPECT_EQ(response.code, 403) << url << ": " << response.body;
  }

  // The kept job still downloads.
  ASSERT_OK(CurlFile(kept));
}

TEST_F(ExportFlowTest, DownloadUrlAnswers410OnceTheRetentionPassed) {
  ASSERT_OK(SeedDemo(200));
  ASSERT_OK(StartServer({"--retention=3s"}));
  ASSERT_OK(StartWorker("w1"));
  ASSERT_OK_AND_ASSIGN(const ExportJob job, CompletedAccountsJob());
  const absl::Time expires_at = absl::FromUnixSeconds(job.expires_at().seconds()) +
                                absl::Nanoseconds(job.expires_at().nanos());
  const absl::Time completed_at = absl::FromUnixSeconds(job.completed_at().seconds()) +
                                  absl::Nanoseconds(job.completed_at().nanos());
  // --retention after completion, rounded up to whole seconds (what the URL carries).
  EXPECT_GE(expires_at - completed_at, absl::Seconds(3));
  EXPECT_LT(expires_at - completed_at, absl::Seconds(4));
  EXPECT_EQ(job.expires_at().nanos(), 0);

  ASSERT_OK_AND_ASSIGN(const HttpResponse first, CurlGet(job.download_url(), Path("first")));
  ASSERT_LT(absl::Now(), expires_at) << "the test was too slow to see the URL valid";
  EXPECT_EQ(first.code, 200) << first.body;

  // Poll (with a deadline) until the URL is refused: 200 until it expires, then 410. The URL's
  // `expires` is the job's expires_at (whole seconds), and the server refuses the URL from then.
  int64_t expires_param = 0;
  ASSERT_TRUE(absl::SimpleAtoi(QueryParam(job.download_url(), "expires"), &expires_param));
  const absl::Time url_expiry = absl::FromUnixSeconds(expires_param);
  EXPECT_EQ(url_expiry, expires_at);
  const absl::Time deadline = expires_at + absl::Seconds(10);
  std::vector<int> codes;
  HttpResponse last;
  while (absl::Now() < deadline) {
    const absl::Time asked_at = absl::Now();
    ASSERT_OK_AND_ASSIGN(last, CurlGet(job.download_url(), Path("poll")));
    const absl::Time answered_at = absl::Now();
    codes.push_back(last.code);
    if (last.code != 200) {
      EXPECT_GE(answered_at, url_expiry) << "refused before the URL expired";
      break;
    }
    EXPECT_LT(asked_at, url_expiry) << "served after the URL expired";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // Polling, not synchronising.
  }
  EXPECT_EQ(last.code, 410) << "codes: " << absl::StrJoin(codes, ",") << "; body: " << last.body;
  for (size_t i = 0; i + 1 < codes.size(); ++i) EXPECT_EQ(codes[i], 200) << "poll " << i;

  // Once expires_at itself has passed, gRPC DownloadExport no longer serves the file either.
  const absl::Duration until_expiry = expires_at - absl::Now() + absl::Milliseconds(50);
  if (until_expiry > absl::ZeroDuration())
    absl::SleepFor(until_expiry);  // A clock time, not an event.
  absl::StatusOr<std::string> grpc_file = DownloadPart(job.id(), 0);
  EXPECT_FALSE(grpc_file.ok()) << "DownloadExport of an expired file returned " << grpc_file->size()
                               << " bytes";
}

}  // namespace
}  // namespace exportd
