#include "common/logging.h"

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "spdlog/async_logger.h"
#include "spdlog/details/thread_pool.h"
#include "spdlog/logger.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/sinks/stdout_sinks.h"

ABSL_FLAG(exportd::LogLevel, log_level, exportd::LogLevel::kInfo,
          "Least level of the JSON log lines on stderr: debug, info, warn, error or off.");

namespace exportd {
namespace {

using Json = nlohmann::ordered_json;

spdlog::level::level_enum ToSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kOff:
      break;
  }
  return spdlog::level::off;
}

// The loggers of the process. `current` is what LogEvent writes to; every logger ever made
// stays alive (in `owned`) so that a thread that read `current` just before it was replaced
// still writes to a live logger. Few are ever made: one per InitLogging or LogCapture.
struct Loggers {
  std::atomic<spdlog::logger*> current{nullptr};
  // LoggingOptions::process of the last InitLogging; null or empty: no "process" field. Each is
  // kept alive like the loggers (few are ever made).
  std::atomic<const std::string*> process{nullptr};
  absl::Mutex mu;
  std::vector<std::shared_ptr<spdlog::logger>> owned ABSL_GUARDED_BY(mu);
  std::vector<std::unique_ptr<const std::string>> owned_process ABSL_GUARDED_BY(mu);
  std::shared_ptr<spdlog::details::thread_pool> pool ABSL_GUARDED_BY(mu);
  // The sinks of the asynchronous loggers, flushed by ShutdownLogging once their pool is done.
  std::vector<std::shared_ptr<spdlog::sinks::sink>> sinks ABSL_GUARDED_BY(mu);

  spdlog::logger* Adopt(std::shared_ptr<spdlog::logger> logger) {
    logger->set_pattern("%v");  // The line is the message: the JSON object.
    absl::MutexLock lock(&mu);
    owned.push_back(logger);
    return logger.get();
  }

  const std::string* AdoptProcess(std::string process) {
    absl::MutexLock lock(&mu);
    owned_process.push_back(std::make_unique<const std::string>(std::move(process)));
    return owned_process.back().get();
  }
};

Loggers& TheLoggers() {
  static Loggers* loggers = new Loggers();  // Never destroyed: logging works until the end.
  return *loggers;
}

std::shared_ptr<spdlog::logger> SyncStderrLogger(LogLevel level) {
  auto logger = std::make_shared<spdlog::logger>("exportd",
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_level(ToSpdlog(level));
  return logger;
}

spdlog::logger* Current() {
  Loggers& loggers = TheLoggers();
  spdlog::logger* logger = loggers.current.load(std::memory_order_acquire);
  if (logger != nullptr) return logger;
  static std::once_flag once;
  std::call_once(once, [&loggers] {
    spdlog::logger* fallback = loggers.Adopt(SyncStderrLogger(LogLevel::kInfo));
    spdlog::logger* expected = nullptr;
    loggers.current.compare_exchange_strong(expected, fallback);
  });
  return loggers.current.load(std::memory_order_acquire);
}

bool Reserved(std::string_view name) {
  return name == "ts" || name == "level" || name == "process" || name == "event";
}

// "2026-11-28T12:00:00.123456Z": RFC 3339 in UTC with microseconds. The part up to the second
// is formatted once per second and thread.
std::string Timestamp(absl::Time now) {
  const int64_t micros = absl::ToUnixMicros(now);
  int64_t seconds = micros / 1000000;
  int64_t fraction = micros % 1000000;
  if (fraction < 0) {
    seconds -= 1;
    fraction += 1000000;
  }
  thread_local int64_t cached_second = std::numeric_limits<int64_t>::min();
  thread_local std::string cached;
  if (seconds != cached_second) {
    cached =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(seconds), absl::UTCTimeZone());
    cached_second = seconds;
  }
  std::string text;
  text.reserve(cached.size() + 8);
  text += cached;
  char digits[9] = {'.', '0', '0', '0', '0', '0', '0', 'Z', '\0'};
  for (int i = 6; i >= 1; --i) {
    digits[i] = static_cast<char>('0' + fraction % 10);
    fraction /= 10;
  }
  text += digits;
  return text;
}

// Appends `text` as a JSON string, escaped and with bytes that are not UTF-8 replaced, as
// Json::dump writes it; names of letters, digits, '_', '.' and '-' need no escaping.
void AppendString(std::string& out, std::string_view text) {
  bool plain = true;
  for (char c : text) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) {
      plain = false;
      break;
    }
  }
  if (plain) {
    out += '"';
    out += text;
    out += '"';
    return;
  }
  out += Json(std::string(text)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// The line as one JSON object: ts, level, process (when set), event, then the fields in order,
// a reserved name written as field_<name>; a name given twice keeps its first place and its
// last value.
std::string FormatLine(LogLevel level, std::string_view event, const LogField* fields,
                       size_t count) {
  const std::string* process = TheLoggers().process.load(std::memory_order_acquire);
  const bool with_process = process != nullptr && !process->empty();
  // The fields' names as written; a name given twice goes the slow way, through a Json object.
  std::vector<std::string> names;
  names.reserve(count);
  bool repeated = false;
  for (size_t i = 0; i < count; ++i) {
    std::string name(fields[i].first);
    if (Reserved(name)) name = "field_" + name;
    for (const std::string& earlier : names) repeated = repeated || earlier == name;
    names.push_back(std::move(name));
  }
  if (repeated) {
    Json line = Json::object();
    line["ts"] = Timestamp(absl::Now());
    line["level"] = std::string(LogLevelName(level));
    if (with_process) line["process"] = *process;
    line["event"] = std::string(event);
    for (size_t i = 0; i < count; ++i) line[names[i]] = fields[i].second;
    return line.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  std::string text;
  text.reserve(128 + 48 * count);
  text += "{\"ts\":\"";
  text += Timestamp(absl::Now());
  text += "\",\"level\":\"";
  text += LogLevelName(level);
  text += '"';
  if (with_process) {
    text += ",\"process\":";
    AppendString(text, *process);
  }
  text += ",\"event\":";
  AppendString(text, event);
  for (size_t i = 0; i < count; ++i) {
    text += ',';
    AppendString(text, names[i]);
    text += ':';
    const Json& value = fields[i].second;
    if (value.is_number_integer()) {
      text += value.is_number_unsigned() ? std::to_string(value.get<uint64_t>())
                                         : std::to_string(value.get<int64_t>());
    } else if (value.is_string()) {
      AppendString(text, value.get_ref<const std::string&>());
    } else {
      text += value.dump(-1, ' ', false, Json::error_handler_t::replace);
    }
  }
  text += '}';
  return text;
}

void Write(LogLevel level, std::string_view event, const LogField* fields, size_t count) {
  spdlog::logger* logger = Current();
  const spdlog::level::level_enum spd_level = ToSpdlog(level);
  if (level == LogLevel::kOff || !logger->should_log(spd_level)) return;
  try {
    const std::string text = FormatLine(level, event, fields, count);
    logger->log(spd_level, spdlog::string_view_t(text.data(), text.size()));
  } catch (const std::exception&) {
    // Logging never takes the caller down (e.g. out of memory while building the line).
  }
}

// The asynchronous logger's sink: stderr, one write per burst of lines instead of one per line.
// A line is written at once when no other line is queued behind it; while more are queued, lines
// gather (up to kBurstBytes) and go out with the last of them. Called on the pool's one thread.
class BurstStderrSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // Only `pool`'s one thread calls the sink while `pool` exists (ShutdownLogging flushes it after
  // the pool has ended), so a plain pointer is enough. A shared one taken on that thread would
  // let the pool's last owner be its own thread, whose destructor would then join itself.
  explicit BurstStderrSink(spdlog::details::thread_pool* pool) : pool_(pool) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    this->formatter_->format(msg, formatted);
    buffer_.append(formatted.data(), formatted.size());
    if (buffer_.size() >= kBurstBytes || pool_->queue_size() == 0) flush_();
  }

  void flush_() override {
    if (buffer_.empty()) return;
    std::fwrite(buffer_.data(), 1, buffer_.size(), stderr);
    std::fflush(stderr);
    buffer_.clear();
  }

 private:
  static constexpr size_t kBurstBytes = 64 * 1024;
  spdlog::details::thread_pool* const pool_;
  std::string buffer_;
};

}  // namespace

// Collects lines in memory (LogCapture).
class LogCapture::Sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> Lines() {
    std::lock_guard<std::mutex> lock(this->mutex_);
    return lines_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    // A LogBatch's message holds several lines.
    for (absl::string_view line :
         absl::StrSplit(absl::string_view(msg.payload.data(), msg.payload.size()), '\n')) {
      lines_.emplace_back(line.data(), line.size());
    }
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;  // Guarded by base_sink's mutex_.
};

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kOff:
      break;
  }
  return "off";
}

bool AbslParseFlag(absl::string_view text, LogLevel* level, std::string* error) {
  for (LogLevel candidate :
       {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError, LogLevel::kOff}) {
    const std::string_view name = LogLevelName(candidate);
    if (text == absl::string_view(name.data(), name.size())) {
      *level = candidate;
      return true;
    }
  }
  *error = "must be one of debug, info, warn, error, off";
  return false;
}

std::string AbslUnparseFlag(LogLevel level) { return std::string(LogLevelName(level)); }

void LogEvent(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  Write(level, event, fields.begin(), fields.size());
}

void LogEvent(LogLevel level, std::string_view event, const std::vector<LogField>& fields) {
  Write(level, event, fields.data(), fields.size());
}

void LogBatch::Add(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  Add(level, event, fields.begin(), fields.size());
}

void LogBatch::Add(LogLevel level, std::string_view event, const std::vector<LogField>& fields) {
  Add(level, event, fields.data(), fields.size());
}

void LogBatch::Add(LogLevel level, std::string_view event, const LogField* fields, size_t count) {
  if (!LogEnabled(level)) return;
  try {
    std::string line = FormatLine(level, event, fields, count);
    if (!text_.empty()) text_ += '\n';
    text_ += line;
    if (level > level_) level_ = level;
  } catch (const std::exception&) {
    // As in Write: logging never takes the caller down.
  }
}

void LogBatch::Write() {
  if (text_.empty()) return;
  std::string text = std::move(text_);
  text_.clear();
  const LogLevel level = level_;
  level_ = LogLevel::kDebug;
  spdlog::logger* logger = Current();
  try {
    logger->log(ToSpdlog(level), spdlog::string_view_t(text.data(), text.size()));
  } catch (const std::exception&) {
  }
}

bool LogEnabled(LogLevel level) {
  return level != LogLevel::kOff && Current()->should_log(ToSpdlog(level));
}

void InitLogging(const LoggingOptions& options) {
  Loggers& loggers = TheLoggers();
  std::shared_ptr<spdlog::logger> logger;
  if (options.async) {
    auto pool = std::make_shared<spdlog::details::thread_pool>(
        options.queue_lines == 0 ? 1 : options.queue_lines, 1,
        [] { pthread_setname_np(pthread_self(), "log-writer"); });
    auto sink = std::make_shared<BurstStderrSink>(pool.get());
    logger = std::make_shared<spdlog::async_logger>("exportd", sink, pool,
                                                    spdlog::async_overflow_policy::overrun_oldest);
    absl::MutexLock lock(&loggers.mu);
    loggers.pool = pool;
    loggers.sinks.push_back(std::move(sink));
  } else {
    logger = SyncStderrLogger(options.level);
  }
  logger->set_level(ToSpdlog(options.level));
  loggers.process.store(loggers.AdoptProcess(options.process), std::memory_order_release);
  loggers.current.store(loggers.Adopt(std::move(logger)), std::memory_order_release);
}

void ShutdownLogging() {
  Loggers& loggers = TheLoggers();
  spdlog::logger* previous =
      loggers.current.exchange(loggers.Adopt(SyncStderrLogger(LogLevel::kInfo)));
  if (previous != nullptr) {
    loggers.current.load()->set_level(previous->level());
    previous->flush();
  }
  std::shared_ptr<spdlog::details::thread_pool> pool;
  {
    absl::MutexLock lock(&loggers.mu);
    pool = std::move(loggers.pool);
  }
  // The pool's thread writes what is queued before it joins; async loggers hold the pool weakly.
  pool.reset();
  // What the sinks gathered behind the pool's own last message (it ends the thread).
  std::vector<std::shared_ptr<spdlog::sinks::sink>> sinks;
  {
    absl::MutexLock lock(&loggers.mu);
    sinks = loggers.sinks;
  }
  for (const auto& sink : sinks) sink->flush();
}

uint64_t DroppedLogLines() {
  Loggers& loggers = TheLoggers();
  absl::MutexLock lock(&loggers.mu);
  return loggers.pool == nullptr ? 0 : loggers.pool->overrun_counter();
}

LogCapture::LogCapture(LogLevel level) : sink_(std::make_shared<Sink>()) {
  auto logger = std::make_shared<spdlog::logger>("exportd-capture", sink_);
  logger->set_level(ToSpdlog(level));
  Loggers& loggers = TheLoggers();
  Current();  // Makes sure there is a logger to restore.
  previous_ = loggers.current.exchange(loggers.Adopt(std::move(logger)));
}

LogCapture::~LogCapture() { TheLoggers().current.store(static_cast<spdlog::logger*>(previous_)); }

std::vector<std::string> LogCapture::Lines() const { return sink_->Lines(); }

std::vector<nlohmann::ordered_json> LogCapture::Events(std::string_view event) const {
  std::vector<nlohmann::ordered_json> events;
  for (const std::string& line : sink_->Lines()) {
    Json parsed = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) continue;
    if (parsed.is_object() && parsed.contains("event") && parsed["event"] == event) {
      events.push_back(std::move(parsed));
    }
  }
  return events;
}

}  // namespace exportd
