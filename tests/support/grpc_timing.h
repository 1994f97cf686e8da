// What tests that time a gRPC deadline may assume about it.
#pragma once

#include "absl/time/time.h"

namespace exportd::test_support {

// gRPC converts a call's deadline to its own monotonic clock, kept in whole milliseconds, so a call
// can end slightly before absl::Now() reaches the deadline it was given (0.7 ms was seen under
// ASan). A test that checks a call lasted until its deadline allows this much early; it is far
// below any difference between the deadlines such tests tell apart.
inline constexpr absl::Duration kGrpcDeadlineSlack = absl::Milliseconds(5);

}  // namespace exportd::test_support
