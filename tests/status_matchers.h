// gMock matchers and assertion macros for absl::Status and absl::StatusOr<T> (Debian's Abseil
// ships none).
//
//   EXPECT_THAT(store.Commit(changes), IsOk());
//   EXPECT_THAT(store.Get(id), StatusIs(absl::StatusCode::kNotFound));
//   EXPECT_THAT(store.Commit(bad), StatusIs(absl::StatusCode::kInvalidArgument,
//                                           HasSubstr("change 1")));
//   EXPECT_THAT(store.LastJobId(), IsOkAndHolds(""));
//   ASSERT_OK_AND_ASSIGN(JobRecord record, store.Get(id));
//   ASSERT_OK(store.Commit(changes));
//
// The matchers accept both absl::Status and absl::StatusOr<T>.
#pragma once

#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace exportd::testing {
namespace internal {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }

template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// Matches a Status, or a StatusOr's status, whose code is `code` and whose message matches
// `message`.
class StatusIsMatcher {
 public:
  using is_gtest_matcher = void;

  StatusIsMatcher(absl::StatusCode code, ::testing::Matcher<const std::string&> message)
      : code_(code), message_(std::move(message)) {}

  template <typename StatusType>
  bool MatchAndExplain(const StatusType& actual, std::ostream* os) const {
    const absl::Status& status = GetStatus(actual);
    if (os != nullptr) *os << "whose status is " << status;
    if (status.code() != code_) return false;
    ::testing::StringMatchResultListener message_listener;
    const bool message_matches =
        message_.MatchAndExplain(std::string(status.message()), &message_listener);
    if (!message_matches && os != nullptr && !message_listener.str().empty()) {
      *os << ", and whose message " << message_listener.str();
    }
    return message_matches;
  }

  void DescribeTo(std::ostream* os) const {
    *os << "has status code " << absl::StatusCodeToString(code_) << " and a message that ";
    message_.DescribeTo(os);
  }

  void DescribeNegationTo(std::ostream* os) const {
    *os << "has a status code other than " << absl::StatusCodeToString(code_)
        << " or a message that ";
    message_.DescribeNegationTo(os);
  }

 private:
  absl::StatusCode code_;
  ::testing::Matcher<const std::string&> message_;
};

// Matches an OK Status or StatusOr.
class IsOkMatcher {
 public:
  using is_gtest_matcher = void;

  template <typename StatusType>
  bool MatchAndExplain(const StatusType& actual, std::ostream* os) const {
    const absl::Status& status = GetStatus(actual);
    if (os != nullptr && !status.ok()) *os << "whose status is " << status;
    return status.ok();
  }

  void DescribeTo(std::ostream* os) const { *os << "is OK"; }
  void DescribeNegationTo(std::ostream* os) const { *os << "is not OK"; }
};

// The IsOkAndHolds matcher for one StatusOr<T>.
template <typename T>
class IsOkAndHoldsMatcherImpl : public ::testing::MatcherInterface<const absl::StatusOr<T>&> {
 public:
  template <typename ValueMatcher>
  explicit IsOkAndHoldsMatcherImpl(ValueMatcher&& value_matcher)
      : value_matcher_(
            ::testing::SafeMatcherCast<const T&>(std::forward<ValueMatcher>(value_matcher))) {}

  bool MatchAndExplain(const absl::StatusOr<T>& actual,
                       ::testing::MatchResultListener* listener) const override {
    if (!actual.ok()) {
      *listener << "whose status is " << actual.status();
      return false;
    }
    ::testing::StringMatchResultListener value_listener;
    const bool matches = value_matcher_.MatchAndExplain(*actual, &value_listener);
    if (value_listener.str().empty()) {
      *listener << "whose value is " << ::testing::PrintToString(*actual);
    } else {
      *listener << "whose value " << value_listener.str();
    }
    return matches;
  }

  void DescribeTo(std::ostream* os) const override {
    *os << "is OK and has a value that ";
    value_matcher_.DescribeTo(os);
  }

  void DescribeNegationTo(std::ostream* os) const override {
    *os << "is not OK or has a value that ";
    value_matcher_.DescribeNegationTo(os);
  }

 private:
  ::testing::Matcher<const T&> value_matcher_;
};

// Polymorphic: becomes an IsOkAndHoldsMatcherImpl for the StatusOr it is matched against.
template <typename ValueMatcher>
class IsOkAndHoldsMatcher {
 public:
  explicit IsOkAndHoldsMatcher(ValueMatcher value_matcher)
      : value_matcher_(std::move(value_matcher)) {}

  template <typename StatusOrType>
  operator ::testing::Matcher<StatusOrType>() const {  // NOLINT(google-explicit-constructor)
    using T = typename std::remove_cv_t<std::remove_reference_t<StatusOrType>>::value_type;
    return ::testing::Matcher<StatusOrType>(new IsOkAndHoldsMatcherImpl<T>(value_matcher_));
  }

 private:
  ValueMatcher value_matcher_;
};

}  // namespace internal

// Matches an OK absl::Status or absl::StatusOr<T>.
inline internal::IsOkMatcher IsOk() { return {}; }

// Matches an OK absl::StatusOr<T> whose value matches `value_matcher` (a matcher or a value to
// equal).
template <typename ValueMatcher>
internal::IsOkAndHoldsMatcher<std::decay_t<ValueMatcher>> IsOkAndHolds(
    ValueMatcher&& value_matcher) {
  return internal::IsOkAndHoldsMatcher<std::decay_t<ValueMatcher>>(
      std::forward<ValueMatcher>(value_matcher));
}

// Matches an absl::Status or absl::StatusOr<T> with code `code` (and any message).
inline internal::StatusIsMatcher StatusIs(absl::StatusCode code) {
  return internal::StatusIsMatcher(code, ::testing::A<const std::string&>());
}

// Matches an absl::Status or absl::StatusOr<T> with code `code` and a message matching
// `message` (a matcher or a string to equal).
template <typename MessageMatcher>
internal::StatusIsMatcher StatusIs(absl::StatusCode code, MessageMatcher&& message) {
  return internal::StatusIsMatcher(
      code, ::testing::MatcherCast<const std::string&>(std::forward<MessageMatcher>(message)));
}

}  // namespace exportd::testing

#define EXPORTD_TESTING_CONCAT_INNER(a, b) a##b
#define EXPORTD_TESTING_CONCAT(a, b) EXPORTD_TESTING_CONCAT_INNER(a, b)

// Asserts that `expr` (a Status or StatusOr) is OK.
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::exportd::testing::IsOk())
// Expects that `expr` (a Status or StatusOr) is OK.
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::exportd::testing::IsOk())

// Evaluates `rexpr` (a StatusOr); fails the test and returns when it is not OK, else moves its
// value into `lhs`, which may be a declaration. Usable only in functions returning void.
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  EXPORTD_ASSERT_OK_AND_ASSIGN_IMPL(EXPORTD_TESTING_CONCAT(exportd_statusor_, __LINE__), lhs, rexpr)

#define EXPORTD_ASSERT_OK_AND_ASSIGN_IMPL(statusor, lhs, rexpr)      \
  auto statusor = (rexpr);                                           \
  ASSERT_TRUE(statusor.ok()) << #rexpr << ": " << statusor.status(); \
  lhs = std::move(*statusor)
