// Structured logging (common/logging.h): each line one JSON object with ts, level, event and the
// fields in order, properly escaped; levels; the flag's parsing; and the asynchronous logger
// writing to the real stderr (a pipe), observed from a child process.
#include "common/logging.h"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace exportd::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::MatchesRegex;
using Json = nlohmann::ordered_json;

std::vector<std::string> Keys(const Json& object) {
  std::vector<std::string> keys;
  for (auto it = object.begin(); it != object.end(); ++it) keys.push_back(it.key());
  return keys;
}

TEST(LoggingTest, ALineIsOneJsonObjectWithTheFieldsInOrder) {
  LogCapture capture;
  LogEvent(LogLevel::kInfo, "job.created",
           {{"job_id", "0123456789abcdef01234567"},
            {"request_id", "r-1"},
            {"entity_type", "accounts"},
            {"attempt", 2},
            {"ok", true},
            {"none", nullptr}});
  std::vector<std::string> lines = capture.Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].find('\n'), std::string::npos);
  Json line = Json::parse(lines[0]);
  EXPECT_THAT(Keys(line), ElementsAre("ts", "level", "event", "job_id", "request_id", "entity_type",
                                      "attempt", "ok", "none"));
  EXPECT_THAT(line["ts"].get<std::string>(),
              MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z"));
  EXPECT_EQ(line["level"], "info");
  EXPECT_EQ(line["event"], "job.created");
  EXPECT_EQ(line["job_id"], "0123456789abcdef01234567");
  EXPECT_EQ(line["attempt"], 2);
  EXPECT_EQ(line["ok"], true);
  EXPECT_TRUE(line["none"].is_null());
}

TEST(LoggingTest, ValuesAreEscapedAndInvalidUtf8IsReplaced) {
  LogCapture capture;
  const std::string nasty = "quote \" backslash \\ newline \n tab \t nul " + std::string(1, '\0') +
                            " bell \x07 caf\xc3\xa9";
  LogEvent(LogLevel::kWarn, "job.failed",
           {{"error", nasty}, {"bytes", std::string("bad \xff\xfe utf-8")}});
  std::vector<std::string> lines = capture.Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].find('\n'), std::string::npos) << lines[0];
  Json line = Json::parse(lines[0]);
  EXPECT_EQ(line["error"], nasty);
  EXPECT_EQ(line["bytes"], "bad \xef\xbf\xbd\xef\xbf\xbd utf-8");
  EXPECT_EQ(line["level"], "warn");
}

// The line as a Json object writes it, from "level" on (ts differs from line to line).
std::string AfterTs(const std::string& line) { return line.substr(line.find(",\"level\"")); }

TEST(LoggingTest, EveryKindOfValueIsWrittenAsAJsonObjectWritesIt) {
  LogCapture capture;
  const Json nested = Json::parse(R"({"b":[1,-2.5,"x\"y",null,true],"a":{}})");
  LogEvent(LogLevel::kInfo, "kinds \"quoted\"",
           {{"negative", int64_t{-42}},
            {"big", uint64_t{18446744073709551615u}},
            {"zero", 0},
            {"ratio", 0.125},
            {"yes", true},
            {"none", nullptr},
            {"text", "caf\xc3\xa9 \xff tab\t"},
            {"odd name \"", "v"},
            {"nested", nested}});
  Json expected = Json::object();
  expected["level"] = "info";
  expected["event"] = "kinds \"quoted\"";
  expected["negative"] = int64_t{-42};
  expected["big"] = uint64_t{18446744073709551615u};
  expected["zero"] = 0;
  expected["ratio"] = 0.125;
  expected["yes"] = true;
  expected["none"] = nullptr;
  expected["text"] = "caf\xc3\xa9 \xff tab\t";
  expected["odd name \""] = "v";
  expected["nested"] = nested;
  const std::string text = expected.dump(-1, ' ', false, Json::error_handler_t::replace);
  const std::vector<std::string> lines = capture.Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(AfterTs(lines[0]), "," + text.substr(1));
}

TEST(LoggingTest, ANameGivenTwiceKeepsItsFirstPlaceAndItsLastValue) {
  LogCapture capture;
  LogEvent(LogLevel::kInfo, "x", {{"a", 1}, {"b", 2}, {"a", 3}, {"event", 4}, {"field_event", 5}});
  const std::string line = capture.Lines().at(0);
  EXPECT_EQ(AfterTs(line), R"(,"level":"info","event":"x","a":3,"b":2,"field_event":5})");
}

TEST(LoggingTest, ReservedNamesAreRenamed) {
  LogCapture capture;
  LogEvent(LogLevel::kInfo, "x", {{"event", "y"}, {"ts", 1}});
  Json line = Json::parse(capture.Lines().at(0));
  EXPECT_EQ(line["event"], "x");
  EXPECT_EQ(line["field_event"], "y");
  EXPECT_EQ(line["field_ts"], 1);
}

TEST(LoggingTest, TheProcessIsNamedAfterTheLevelWhenInitLoggingNamesIt) {
  InitLogging({.level = LogLevel::kInfo, .process = "export-worker"});
  {
    LogCapture capture;
    LogEvent(LogLevel::kInfo, "job.claimed", {{"process", "mine"}, {"job_id", "j"}});
    const std::string text = capture.Lines().at(0);
    Json line = Json::parse(text);
    EXPECT_EQ(line["process"], "export-worker");
    EXPECT_EQ(line["field_process"], "mine");
    EXPECT_LT(text.find("\"level\""), text.find("\"process\""));
    EXPECT_LT(text.find("\"process\""), text.find("\"event\""));
  }
  InitLogging({});
  LogCapture capture;
  LogEvent(LogLevel::kInfo, "x");
  EXPECT_FALSE(Json::parse(capture.Lines().at(0)).contains("process"));
}

TEST(LoggingTest, FieldsBuiltAtRunTime) {
  LogCapture capture;
  std::vector<LogField> fields;
  fields.emplace_back("n", 1);
  fields.emplace_back("list", Json::array({1, "two"}));
  LogEvent(LogLevel::kError, "server.error", fields);
  Json line = Json::parse(capture.Lines().at(0));
  EXPECT_EQ(line["level"], "error");
  EXPECT_EQ(line["list"].dump(), "[1,\"two\"]");
}

TEST(LoggingTest, LinesBelowTheLevelAreNotWritten) {
  LogCapture capture(LogLevel::kWarn);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  LogEvent(LogLevel::kDebug, "a");
  LogEvent(LogLevel::kInfo, "b");
  LogEvent(LogLevel::kWarn, "c");
  LogEvent(LogLevel::kError, "d");
  LogEvent(LogLevel::kOff, "e");
  std::vector<std::string> events;
  for (const std::string& line : capture.Lines()) events.push_back(Json::parse(line)["event"]);
  EXPECT_THAT(events, ElementsAre("c", "d"));
}

TEST(LoggingTest, CapturesNestAndRestore) {
  LogCapture outer;
  {
    LogCapture inner;
    LogEvent(LogLevel::kInfo, "inner");
    EXPECT_EQ(inner.Lines().size(), 1u);
  }
  LogEvent(LogLevel::kInfo, "outer");
  ASSERT_EQ(outer.Lines().size(), 1u);
  EXPECT_EQ(outer.Events("outer").size(), 1u);
  EXPECT_EQ(outer.Events("inner").size(), 0u);
}

TEST(LoggingTest, ManyThreadsWriteWholeLines) {
  LogCapture capture;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 200; ++i) LogEvent(LogLevel::kInfo, "tick", {{"t", t}, {"i", i}});
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::vector<std::string> lines = capture.Lines();
  ASSERT_EQ(lines.size(), 800u);
  for (const std::string& line : lines) {
    EXPECT_FALSE(Json::parse(line, nullptr, false).is_discarded()) << line;
  }
}

TEST(LoggingTest, TheLevelFlagParsesItsNames) {
  LogLevel level = LogLevel::kInfo;
  std::string error;
  EXPECT_TRUE(AbslParseFlag("debug", &level, &error));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_TRUE(AbslParseFlag("off", &level, &error));
  EXPECT_EQ(level, LogLevel::kOff);
  EXPECT_FALSE(AbslParseFlag("loud", &level, &error));
  EXPECT_EQ(error, "must be one of debug, info, warn, error, off");
  EXPECT_EQ(AbslUnparseFlag(LogLevel::kWarn), "warn");
  EXPECT_EQ(absl::GetFlag(FLAGS_log_level), LogLevel::kInfo);
}

// Runs `body` in a child process whose stderr is a pipe; returns what it wrote there.
template <typename Body>
std::string ChildStderr(Body body) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    body();
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof(buffer))) > 0) out.append(buffer, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return out;
}

TEST(LoggingTest, TheAsynchronousLoggerWritesEveryLineToStderrByShutdown) {
  const std::string written = ChildStderr([] {
    InitLogging({.level = LogLevel::kInfo, .async = true, .queue_lines = 1024});
    for (int i = 0; i < 100; ++i) LogEvent(LogLevel::kInfo, "n", {{"i", i}});
    LogEvent(LogLevel::kDebug, "hidden");
    ShutdownLogging();
    LogEvent(LogLevel::kInfo, "after");  // Synchronous from here on.
  });
  std::vector<std::string> lines = absl::StrSplit(written, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 101u) << written;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(Json::parse(lines[i])["i"], i);
  EXPECT_EQ(Json::parse(lines[100])["event"], "after");
}

// Reads `fd` until what was read contains `needle`, the writer closes it, or ten seconds pass
// without anything to read (the text never came); returns what was read.
std::string ReadUntil(int fd, std::string_view needle) {
  std::string read_so_far;
  char buffer[4096];
  while (read_so_far.find(needle) == std::string::npos) {
    pollfd readable{fd, POLLIN, 0};
    if (poll(&readable, 1, 10000) <= 0) break;
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    read_so_far.append(buffer, static_cast<size_t>(n));
  }
  return read_so_far;
}

// Reads `fd` to its end, closes it and returns what was read.
std::string ReadAllAndClose(int fd) {
  std::string all;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) all.append(buffer, static_cast<size_t>(n));
  close(fd);
  return all;
}

TEST(LoggingTest, TheAsynchronousLoggerWritesALineWithoutWaitingForTheNext) {
  // The child logs one line and waits; the line must reach the pipe while it waits.
  int err[2];
  int go[2];
  ASSERT_EQ(pipe(err), 0);
  ASSERT_EQ(pipe(go), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(err[0]);
    close(go[1]);
    dup2(err[1], 2);
    InitLogging({.level = LogLevel::kInfo, .async = true, .queue_lines = 1024});
    for (int i = 0; i < 50; ++i) LogEvent(LogLevel::kInfo, "burst", {{"i", i}});
    LogEvent(LogLevel::kInfo, "alone");
    char c;
    while (read(go[0], &c, 1) < 0) {
    }
    _exit(0);  // Without ShutdownLogging: only what was written already counts.
  }
  close(err[1]);
  close(go[0]);
  std::string written = ReadUntil(err[0], "\"alone\"");
  char buffer[4096];
  EXPECT_NE(written.find("\"alone\""), std::string::npos) << written;
  close(go[1]);
  while (read(err[0], buffer, sizeof(buffer)) > 0) {
  }
  close(err[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  std::vector<std::string> lines = absl::StrSplit(written, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 51u) << written;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(Json::parse(lines[i])["i"], i);
}

TEST(LoggingTest, ABatchWritesItsLinesInOrderAsOneMessageWhenWritten) {
  LogCapture capture(LogLevel::kInfo);
  {
    LogBatch batch;
    batch.Add(LogLevel::kInfo, "job.created", {{"job_id", "a"}, {"revision", 1}});
    batch.Add(LogLevel::kDebug, "job.progress", {{"job_id", "a"}});  // Below the level.
    std::vector<LogField> fields;
    fields.emplace_back("job_id", "b");
    fields.emplace_back("error", "quote \" newline \n");
    batch.Add(LogLevel::kWarn, "job.failed", fields);
    EXPECT_TRUE(capture.Lines().empty()) << "lines written before the batch was";
    batch.Write();
    ASSERT_EQ(capture.Lines().size(), 2u);
    batch.Add(LogLevel::kError, "job.last");
  }  // Destruction writes what was added since.
  std::vector<std::string> lines = capture.Lines();
  ASSERT_EQ(lines.size(), 3u);
  std::vector<Json> parsed;
  for (const std::string& line : lines) parsed.push_back(Json::parse(line));
  EXPECT_EQ(parsed[0]["event"], "job.created");
  EXPECT_EQ(parsed[0]["level"], "info");
  EXPECT_EQ(parsed[0]["revision"], 1);
  EXPECT_EQ(parsed[1]["event"], "job.failed");
  EXPECT_EQ(parsed[1]["level"], "warn");
  EXPECT_EQ(parsed[1]["error"], "quote \" newline \n");
  EXPECT_EQ(parsed[2]["event"], "job.last");
  EXPECT_EQ(parsed[2]["level"], "error");
}

TEST(LoggingTest, ABatchWithNoLineWritesNothing) {
  LogCapture capture(LogLevel::kWarn);
  {
    LogBatch batch;
    batch.Add(LogLevel::kInfo, "hidden");
    batch.Write();
    LogBatch empty;
  }
  EXPECT_TRUE(capture.Lines().empty());
}

TEST(LoggingTest, TheAsynchronousLoggerWritesABatchAsWholeLinesAmongOthers) {
  const std::string written = ChildStderr([] {
    InitLogging({.level = LogLevel::kInfo, .async = true, .queue_lines = 1024});
    std::thread other([] {
      for (int i = 0; i < 200; ++i) LogEvent(LogLevel::kInfo, "single", {{"i", i}});
    });
    for (int b = 0; b < 20; ++b) {
      LogBatch batch;
      for (int i = 0; i < 10; ++i) batch.Add(LogLevel::kInfo, "batched", {{"i", b * 10 + i}});
    }
    other.join();
    ShutdownLogging();
  });
  std::vector<std::string> lines = absl::StrSplit(written, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 400u) << written;
  int batched = 0;
  int single = 0;
  for (const std::string& line : lines) {
    const Json parsed = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(parsed.is_discarded()) << line;
    // Each kind in its own order: a batch's lines stay together and in order.
    if (parsed["event"] == "batched") {
      EXPECT_EQ(parsed["i"], batched++);
    } else if (parsed["event"] == "single") {
      EXPECT_EQ(parsed["i"], single++);
    }
  }
  EXPECT_EQ(batched, 200);
  EXPECT_EQ(single, 200);
}

TEST(LoggingTest, TheAsynchronousLoggersThreadIsNamed) {
  // The child logs a line; once the parent has read it, the writer thread has started (and
  // named itself) for sure, and the child reports its threads' names.
  int err[2];
  int go[2];
  int report[2];
  ASSERT_EQ(pipe(err), 0);
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(report), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(err[0]);
    close(go[1]);
    close(report[0]);
    dup2(err[1], 2);
    InitLogging({.level = LogLevel::kInfo, .async = true, .queue_lines = 16});
    LogEvent(LogLevel::kInfo, "started");
    char c;
    while (read(go[0], &c, 1) < 0) {
    }
    std::string names;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      if (std::getline(comm, name)) names += name + "\n";
    }
    if (write(report[1], names.data(), names.size()) < 0) _exit(2);
    close(report[1]);
    _exit(0);
  }
  close(err[1]);
  close(go[0]);
  close(report[1]);
  std::string written = ReadUntil(err[0], "\"started\"");
  ASSERT_EQ(write(go[1], "x", 1), 1);
  close(go[1]);
  const std::string names = ReadAllAndClose(report[0]);
  ReadAllAndClose(err[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(written.find("\"started\""), std::string::npos) << written;
  std::vector<std::string> threads = absl::StrSplit(names, '\n', absl::SkipEmpty());
  EXPECT_THAT(threads, ::testing::Contains("log-writer")) << names;
}

TEST(LoggingTest, AStuckStderrNeverBlocksTheCallerItDropsTheOldestLines) {
  // The child's stderr is a pipe nobody reads until the child has reported: once the pipe is
  // full the background writer waits, and the callers must not.
  int err[2];
  int report[2];
  ASSERT_EQ(pipe(err), 0);
  ASSERT_EQ(pipe(report), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(err[0]);
    close(report[0]);
    dup2(err[1], 2);
    InitLogging({.level = LogLevel::kInfo, .async = true, .queue_lines = 4});
    const std::string padding(200, 'x');
    for (int i = 0; i < 5000; ++i) LogEvent(LogLevel::kInfo, "n", {{"i", i}, {"pad", padding}});
    const std::string dropped = std::to_string(DroppedLogLines());
    if (write(report[1], dropped.data(), dropped.size()) < 0) _exit(2);
    // The report ends here, not at exit: _exit may flush stderr first (it does under
    // ThreadSanitizer), and stderr stays locked by the stuck writer until the parent drains it.
    close(report[1]);
    _exit(0);  // Without ShutdownLogging: the writer is still stuck.
  }
  close(err[1]);
  close(report[1]);
  const std::string dropped = ReadAllAndClose(report[0]);
  ReadAllAndClose(err[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // 5000 lines of ~250 bytes do not fit a 64 KiB pipe and a queue of 4.
  EXPECT_GT(std::stoi(dropped), 4000) << dropped;
}

TEST(LoggingTest, TheDefaultLoggerWritesToStderrAtInfo) {
  const std::string written = ChildStderr([] {
    LogEvent(LogLevel::kDebug, "hidden");
    LogEvent(LogLevel::kInfo, "shown", {{"k", "v"}});
  });
  Json line = Json::parse(written);
  EXPECT_EQ(line["event"], "shown");
  EXPECT_EQ(line["k"], "v");
}

}  // namespace
}  // namespace exportd::testing
