// Structured logs: one JSON object per line on stderr, written through spdlog.
//
//   LogEvent(LogLevel::kInfo, "job.created",
//            {{"job_id", job.id()}, {"request_id", job.request_id()}, {"attempt", 2}});
//
// writes
//
//   {"ts":"2026-11-28T12:00:00.123456Z","level":"info","event":"job.created","job_id":"...",...}
//
// ts is RFC 3339 in UTC with microseconds, level one of debug, info, warn, error, then the
// process (when InitLogging named one), the event name and the fields in the order given. Field
// values are any JSON value (strings, numbers, booleans, null, objects, arrays); strings are
// escaped as JSON requires, and bytes that are not UTF-8 are replaced (U+FFFD), so every line is
// valid JSON. A field named ts, level, process or event is written as field_<name>.
//
// Each process logs through one spdlog logger, replaced by InitLogging (default until then: a
// synchronous logger on stderr at info). With LoggingOptions::async, a line is only formatted
// and queued by the calling thread and written by a background thread, so no caller waits for
// stderr (a pipe to a slow reader); when the queue is full the oldest queued lines are dropped
// and counted (DroppedLogLines), never the caller blocked.
//
// The --log_level flag (debug, info, warn, error, off) is defined here for every binary that
// logs; InitLogging takes its value from LoggingOptions, e.g. {.level =
// absl::GetFlag(FLAGS_log_level)}.
//
// Thread safety: LogEvent, LogEnabled and DroppedLogLines may be called from any thread at any
// time; a LogBatch belongs to one thread at a time. InitLogging and ShutdownLogging are for main();
// LogCapture for tests.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace exportd {

enum class LogLevel { kDebug, kInfo, kWarn, kError, kOff };

// "debug", "info", "warn", "error", "off".
std::string_view LogLevelName(LogLevel level);

// For absl flags: parses the names above.
bool AbslParseFlag(absl::string_view text, LogLevel* level, std::string* error);
std::string AbslUnparseFlag(LogLevel level);

// One field of a line: its name and its value.
using LogField = std::pair<std::string_view, nlohmann::ordered_json>;

// Writes one line if `level` is enabled. Never throws; does not block on I/O when the logger is
// asynchronous.
void LogEvent(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});
void LogEvent(LogLevel level, std::string_view event, const std::vector<LogField>& fields);

// Whether lines of `level` are written (to skip building expensive fields).
bool LogEnabled(LogLevel level);

// Lines written together, for a burst of lines from one thread (a line per job of a group
// commit): each Add formats its line at once, as LogEvent would (its own ts and level); Write,
// or the destructor, hands all the lines added since to the logger as one message. The
// asynchronous logger then queues and wakes its writer once for the burst instead of once per
// line. The lines come out together, in the order added; their queue slot is one message.
class LogBatch {
 public:
  LogBatch() = default;
  ~LogBatch() { Write(); }
  LogBatch(const LogBatch&) = delete;
  LogBatch& operator=(const LogBatch&) = delete;

  // Adds a line if `level` is enabled.
  void Add(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});
  void Add(LogLevel level, std::string_view event, const std::vector<LogField>& fields);
  // Writes the lines added so far, if any. Never throws.
  void Write();

 private:
  void Add(LogLevel level, std::string_view event, const LogField* fields, size_t count);

  std::string text_;                   // The lines, each followed by '\n' but the last.
  LogLevel level_ = LogLevel::kDebug;  // The highest level of the lines.
};

struct LoggingOptions {
  LogLevel level = LogLevel::kInfo;
  // Write from a background thread through a queue of `queue_lines` messages: a message is one
  // line, or all the lines of one LogBatch (see above).
  bool async = false;
  size_t queue_lines = 8192;
  // When set, every line names the process after its level ("process":"export-server"), so
  // that the lines of several processes can share one log store.
  std::string process = {};
};

// Replaces the process's logger with one on stderr. Lines already queued by an earlier
// asynchronous logger are still written.
void InitLogging(const LoggingOptions& options);

// Writes what is queued and stops the background thread; later lines are written synchronously.
// For the end of main().
void ShutdownLogging();

// Messages dropped because the asynchronous queue was full, since InitLogging: each a line, or
// the lines of one LogBatch.
uint64_t DroppedLogLines();

// For tests: while a LogCapture lives, lines go to it (synchronously, at level debug unless
// told otherwise) instead of to the logger it replaced, which it restores when destroyed.
class LogCapture {
 public:
  explicit LogCapture(LogLevel level = LogLevel::kDebug);
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // The lines written so far, without their newlines.
  std::vector<std::string> Lines() const;
  // The lines whose event is `event`, parsed (lines that are not JSON objects are left out).
  std::vector<nlohmann::ordered_json> Events(std::string_view event) const;

  class Sink;

 private:
  std::shared_ptr<Sink> sink_;
  void* previous_;
};

}  // namespace exportd

ABSL_DECLARE_FLAG(exportd::LogLevel, log_level);
