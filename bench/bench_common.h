// What the measurements of exportd-bench share: clocks, deadlines, channels, latency
// percentiles, the median/min/max summary over runs, and output lines.
//
// Thread safety: free functions and plain values; PrintLine may be called from any thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace exportd::bench {

using SteadyClock = std::chrono::steady_clock;

// The export-server flags of every server the benchmark starts: the per-tenant limits off, since
// every call comes from one tenant and the point is the server's own throughput
// (docs/operations.md, "Limits").
inline const std::vector<std::string>& UnlimitedServerArgs() {
  static const std::vector<std::string> args = {"--create_rate_per_tenant=0",
                                                "--max_active_jobs_per_tenant=0",
                                                "--max_watchers_per_tenant=0", "--max_watchers=0"};
  return args;
}

inline int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now().time_since_epoch())
      .count();
}

inline std::chrono::system_clock::time_point DeadlineAfter(absl::Duration timeout) {
  return absl::ToChronoTime(absl::Now() + timeout);
}

inline std::string StatusText(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), ": ", status.error_message());
}

// A channel with a connection of its own: channels with different args never share one.
inline std::shared_ptr<grpc::Channel> NewChannel(const std::string& address, int index) {
  grpc::ChannelArguments args;
  args.SetInt("exportd.channel", index);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// Latency summary in microseconds, nearest-rank percentiles.
struct Latency {
  double p50_us = 0;
  double p99_us = 0;
  double max_us = 0;

  static Latency Of(std::vector<int64_t> nanos) {
    Latency latency;
    if (nanos.empty()) return latency;
    std::sort(nanos.begin(), nanos.end());
    auto at = [&](double q) {
      size_t rank = static_cast<size_t>(q * static_cast<double>(nanos.size()) + 0.999999);
      rank = std::clamp<size_t>(rank, 1, nanos.size());
      return static_cast<double>(nanos[rank - 1]) / 1000.0;
    };
    latency.p50_us = at(0.50);
    latency.p99_us = at(0.99);
    latency.max_us = static_cast<double>(nanos.back()) / 1000.0;
    return latency;
  }
};

// Median, min and max of one value over the runs.
struct Spread {
  double median = 0, min = 0, max = 0;

  static Spread Of(std::vector<double> values) {
    Spread spread;
    if (values.empty()) return spread;
    std::sort(values.begin(), values.end());
    const size_t n = values.size();
    spread.median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    spread.min = values.front();
    spread.max = values.back();
    return spread;
  }

  // `digits` after the decimal point (ratios want more than throughputs).
  std::string Json(int digits = 1) const {
    return absl::StrFormat(R"({"median":%.*f,"min":%.*f,"max":%.*f})", digits, median, digits, min,
                           digits, max);
  }
};

template <typename Result, typename F>
Spread SpreadOf(const std::vector<Result>& results, F value) {
  std::vector<double> values;
  for (const Result& result : results) values.push_back(value(result));
  return Spread::Of(std::move(values));
}

inline void PrintLine(const std::string& line) {
  std::cout << line << std::endl;  // Flushed: one complete line per measurement.
}

}  // namespace exportd::bench
