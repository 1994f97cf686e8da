// Executor: a fixed pool of threads that runs submitted tasks in submission order per thread.
// The server uses it for work that may block (RocksDB reads) so that gRPC callback threads never
// do.
//
// Thread safety: Submit may be called from any thread, including from a task. Shutdown (and the
// destructor) runs every task already submitted, then joins the threads; a task submitted after
// Shutdown runs at once on the submitting thread, so that no task is ever lost.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace exportd {

class Executor {
 public:
  Executor(std::string name, int threads);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task` (runs it inline after Shutdown).
  void Submit(absl::AnyInvocable<void() &&> task);

  // Runs what is queued, then stops the threads. Idempotent.
  void Shutdown();

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace exportd
