#include "common/logging.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
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

void Write(LogLevel level, std::string_view event, const LogField* fields, size_t count) {
  spdlog::logger* logger = Current();
  const spdlog::level::level_enum spd_level = ToSpdlog(level);
  if (level == LogLevel::kOff || !logger->should_log(spd_level)) return;
  try {
    Json line = Json::object();
    line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone());
    line["level"] = std::string(LogLevelName(level));
    const std::string* process = TheLoggers().process.load(std::memory_order_acquire);
    if (process != nullptr && !process->empty()) line["process"] = *process;
    line["event"] = std::string(event);
    for (size_t i = 0; i < count; ++i) {
      std::string name(fields[i].first);
      if (name == "ts" || name == "level" || name == "process" || name == "event") {
        name = "field_" + name;
      }
      line[name] = fields[i].second;
    }
    const std::string text = line.dump(-1, ' ', false, Json::error_handler_t::replace);
    logger->log(spd_level, spdlog::string_view_t(text.data(), text.size()));
  } catch (const std::exception&) {
    // Logging never takes the caller down (e.g. out of memory while building the line).
  }
}

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
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
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

bool LogEnabled(LogLevel level) {
  return level != LogLevel::kOff && Current()->should_log(ToSpdlog(level));
}

void InitLogging(const LoggingOptions& options) {
  Loggers& loggers = TheLoggers();
  std::shared_ptr<spdlog::logger> logger;
  if (options.async) {
    auto pool = std::make_shared<spdlog::details::thread_pool>(
        options.queue_lines == 0 ? 1 : options.queue_lines, 1);
    logger = std::make_shared<spdlog::async_logger>(
        "exportd", std::make_shared<spdlog::sinks::stderr_sink_mt>(), pool,
        spdlog::async_overflow_policy::overrun_oldest);
    absl::MutexLock lock(&loggers.mu);
    loggers.pool = pool;
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
