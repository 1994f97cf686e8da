// Makes Debian's uninstrumented absl::Mutex visible to ThreadSanitizer (docs/testing.md).
//
// Linked into every executable of the thread build only (-DEXPORTD_SANITIZE=thread; the root
// CMakeLists.txt adds it). Debian's libabsl_synchronization is built without -fsanitize=thread:
// its Mutex, CondVar and Notification are atomics and futexes TSan cannot see, so every piece of
// state guarded by one looked like a data race. This file defines the out-of-line entry points
// of those classes in the executable itself, where they interpose the shared library's: for the
// project's code, and through the PLT also for gRPC's and Abseil's own calls (grpc_core::Mutex
// and gpr_mu are absl::Mutex). Each definition announces the operation with the mutex
// annotations that Abseil itself uses when it is built with TSan (__tsan_mutex_pre_lock and
// friends) and calls the library's definition, found with dlsym(RTLD_NEXT).
//
// Memory accesses inside the library's call are ignored by TSan (the annotation window), as in
// an instrumented Abseil: that includes absl::Condition predicates, which the library may
// evaluate on the thread releasing the mutex.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

#define EXPORTD_STRINGIFY_INNER(x) #x
#define EXPORTD_STRINGIFY(x) EXPORTD_STRINGIFY_INNER(x)

// The mangled name of absl::<inline namespace>::<rest>, where `rest` is the mangled tail after
// the namespace (e.g. "5Mutex4LockEv"), and `prefix` is "_ZN" or "_ZNK".
std::string Mangled(const char* prefix, const char* rest) {
  const std::string ns = EXPORTD_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  return std::string(prefix) + "4absl" + std::to_string(ns.size()) + ns + rest;
}

// The shared library's definition of a symbol this file interposes. A missing one means the
// Abseil in use is not the one this file was written for: stop, naming it.
template <typename Fn>
Fn Real(const char* prefix, const char* rest) {
  const std::string name = Mangled(prefix, rest);
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: %s not found in the loaded Abseil: %s\n", name.c_str(),
                 dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

#define EXPORTD_REAL(type, prefix, rest)             \
  static const auto real = Real<type>(prefix, rest); \
  (void)0

// absl::Mutex's lock word (mutex.cc): set while held in write mode, and in shared mode.
constexpr intptr_t kMuReader = 0x0001;
constexpr intptr_t kMuWriter = 0x0008;

// The TSan flags for the mode in which the calling thread holds `mu` (it must hold it).
unsigned HeldFlags(const absl::Mutex* mu) {
  static_assert(sizeof(absl::Mutex) == sizeof(intptr_t));
  const intptr_t word = __atomic_load_n(reinterpret_cast<const intptr_t*>(mu), __ATOMIC_RELAXED);
  return (word & kMuWriter) == 0 && (word & kMuReader) != 0 ? __tsan_mutex_read_lock : 0;
}

// Announces that the thread gives `mu` up and starts taking it again (Await, CondVar::Wait):
// the library releases and reacquires it inside the call.
void ReleaseAndRelock(absl::Mutex* mu, unsigned flags) {
  __tsan_mutex_pre_unlock(mu, flags);
  __tsan_mutex_post_unlock(mu, flags);
  __tsan_mutex_pre_lock(mu, flags);
}

// How deep the calling thread is inside the library's own calls made from here. The library
// calls its public entry points itself (through the PLT, so they land here again: e.g.
// CondVar::WaitWithTimeout calls WaitWithDeadline, Notification::WaitForNotificationWithTimeout
// calls LockWhenWithTimeout); nested calls made inside an annotated call go straight to the
// library, within the outer call's annotation window.
thread_local int library_depth = 0;

// Runs the library's call with the depth raised.
template <typename Fn, typename... Args>
auto InLibrary(Fn real, Args... args) {
  ++library_depth;
  if constexpr (std::is_void_v<decltype(real(args...))>) {
    real(args...);
    --library_depth;
  } else {
    const auto result = real(args...);
    --library_depth;
    return result;
  }
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

using LockFn = void (*)(Mutex*);
using TryLockFn = bool (*)(Mutex*);
using CondFn = void (*)(Mutex*, const Condition*);
using CondTimeoutFn = bool (*)(Mutex*, const Condition*, Duration);
using CondDeadlineFn = bool (*)(Mutex*, const Condition*, Time);

void Mutex::Lock() {
  EXPORTD_REAL(LockFn, "_ZN", "5Mutex4LockEv");
  if (library_depth > 0) return real(this);
  __tsan_mutex_pre_lock(this, 0);
  InLibrary(real, this);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLock() {
  EXPORTD_REAL(LockFn, "_ZN", "5Mutex10ReaderLockEv");
  if (library_depth > 0) return real(this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  InLibrary(real, this);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

void Mutex::Unlock() {
  EXPORTD_REAL(LockFn, "_ZN", "5Mutex6UnlockEv");
  if (library_depth > 0) return real(this);
  __tsan_mutex_pre_unlock(this, 0);
  InLibrary(real, this);
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() {
  EXPORTD_REAL(LockFn, "_ZN", "5Mutex12ReaderUnlockEv");
  if (library_depth > 0) return real(this);
  __tsan_mutex_pre_unlock(this, __tsan_mutex_read_lock);
  InLibrary(real, this);
  __tsan_mutex_post_unlock(this, __tsan_mutex_read_lock);
}

bool Mutex::TryLock() {
  EXPORTD_REAL(TryLockFn, "_ZN", "5Mutex7TryLockEv");
  if (library_depth > 0) return real(this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  const bool locked = InLibrary(real, this);
  __tsan_mutex_post_lock(this, __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed),
                         0);
  return locked;
}

bool Mutex::ReaderTryLock() {
  EXPORTD_REAL(TryLockFn, "_ZN", "5Mutex13ReaderTryLockEv");
  if (library_depth > 0) return real(this);
  const unsigned flags = __tsan_mutex_read_lock | __tsan_mutex_try_lock;
  __tsan_mutex_pre_lock(this, flags);
  const bool locked = InLibrary(real, this);
  __tsan_mutex_post_lock(this, flags | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  return locked;
}

void Mutex::LockWhen(const Condition& cond) {
  EXPORTD_REAL(CondFn, "_ZN", "5Mutex8LockWhenERKNS0_9ConditionE");
  if (library_depth > 0) return real(this, &cond);
  __tsan_mutex_pre_lock(this, 0);
  InLibrary(real, this, &cond);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  EXPORTD_REAL(CondFn, "_ZN", "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  if (library_depth > 0) return real(this, &cond);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  InLibrary(real, this, &cond);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  EXPORTD_REAL(CondTimeoutFn, "_ZN", "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (library_depth > 0) return real(this, &cond, timeout);
  __tsan_mutex_pre_lock(this, 0);
  const bool met = InLibrary(real, this, &cond, timeout);
  __tsan_mutex_post_lock(this, 0, 0);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  EXPORTD_REAL(CondTimeoutFn, "_ZN",
               "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (library_depth > 0) return real(this, &cond, timeout);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  const bool met = InLibrary(real, this, &cond, timeout);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  EXPORTD_REAL(CondDeadlineFn, "_ZN", "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (library_depth > 0) return real(this, &cond, deadline);
  __tsan_mutex_pre_lock(this, 0);
  const bool met = InLibrary(real, this, &cond, deadline);
  __tsan_mutex_post_lock(this, 0, 0);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  EXPORTD_REAL(CondDeadlineFn, "_ZN",
               "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (library_depth > 0) return real(this, &cond, deadline);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  const bool met = InLibrary(real, this, &cond, deadline);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  return met;
}

void Mutex::Await(const Condition& cond) {
  EXPORTD_REAL(CondFn, "_ZN", "5Mutex5AwaitERKNS0_9ConditionE");
  if (library_depth > 0) return real(this, &cond);
  const unsigned flags = HeldFlags(this);
  ReleaseAndRelock(this, flags);
  InLibrary(real, this, &cond);
  __tsan_mutex_post_lock(this, flags, 0);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  EXPORTD_REAL(CondTimeoutFn, "_ZN", "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (library_depth > 0) return real(this, &cond, timeout);
  const unsigned flags = HeldFlags(this);
  ReleaseAndRelock(this, flags);
  const bool met = InLibrary(real, this, &cond, timeout);
  __tsan_mutex_post_lock(this, flags, 0);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  EXPORTD_REAL(CondDeadlineFn, "_ZN", "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (library_depth > 0) return real(this, &cond, deadline);
  const unsigned flags = HeldFlags(this);
  ReleaseAndRelock(this, flags);
  const bool met = InLibrary(real, this, &cond, deadline);
  __tsan_mutex_post_lock(this, flags, 0);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  EXPORTD_REAL(void (*)(CondVar*, Mutex*), "_ZN", "7CondVar4WaitEPNS0_5MutexE");
  if (library_depth > 0) return real(this, mu);
  const unsigned flags = HeldFlags(mu);
  ReleaseAndRelock(mu, flags);
  InLibrary(real, this, mu);
  __tsan_mutex_post_lock(mu, flags, 0);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  EXPORTD_REAL(bool (*)(CondVar*, Mutex*, Duration), "_ZN",
               "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  if (library_depth > 0) return real(this, mu, timeout);
  const unsigned flags = HeldFlags(mu);
  ReleaseAndRelock(mu, flags);
  const bool timed_out = InLibrary(real, this, mu, timeout);
  __tsan_mutex_post_lock(mu, flags, 0);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  EXPORTD_REAL(bool (*)(CondVar*, Mutex*, Time), "_ZN",
               "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  if (library_depth > 0) return real(this, mu, deadline);
  const unsigned flags = HeldFlags(mu);
  ReleaseAndRelock(mu, flags);
  const bool timed_out = InLibrary(real, this, mu, deadline);
  __tsan_mutex_post_lock(mu, flags, 0);
  return timed_out;
}

// A Notification is { Mutex mutex_; std::atomic<bool> notified_yet_; }. Notify sets the flag
// under the mutex, but both HasBeenNotified() (inline: an acquire load in the caller's
// instrumented code) and the WaitForNotification calls (which return at once, without the mutex,
// once the flag is set) read the flag alone. So Notify announces a release on the flag's address,
// and each wait that saw the notification an acquire on it.
static void* NotifiedFlag(const Notification* n) {
  static_assert(sizeof(Notification) == sizeof(Mutex) + sizeof(intptr_t),
                "Notification is { Mutex mutex_; std::atomic<bool> notified_yet_; }");
  return const_cast<char*>(reinterpret_cast<const char*>(n)) + sizeof(Mutex);
}

void Notification::Notify() {
  EXPORTD_REAL(void (*)(Notification*), "_ZN", "12Notification6NotifyEv");
  __tsan_release(NotifiedFlag(this));
  real(this);
}

void Notification::WaitForNotification() const {
  EXPORTD_REAL(void (*)(const Notification*), "_ZNK", "12Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(NotifiedFlag(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  EXPORTD_REAL(bool (*)(const Notification*, Duration), "_ZNK",
               "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(NotifiedFlag(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  EXPORTD_REAL(bool (*)(const Notification*, Time), "_ZNK",
               "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(NotifiedFlag(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
