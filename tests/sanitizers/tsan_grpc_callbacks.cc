// Makes gRPC's order between starting an operation and running its completion callback visible
// to ThreadSanitizer (docs/testing.md).
//
// Linked into every executable of the thread build only, beside tsan_absl_sync.cc. gRPC
// guarantees that a reactor's callback (OnReadDone, OnWriteDone, a unary call's callback...)
// runs after the operation it completes was started (StartRead, StartWrite, the call itself),
// and that is what lets a reactor hand state from one callback to the next without a lock. The
// order is made inside the uninstrumented libgrpc (completion queues, closures, epoll), so TSan
// saw none: a reactor's fields written in one callback and read in the next, on another thread,
// looked like a race. This file makes the order visible, and nothing more:
// - every operation batch starts through grpc_call_start_batch, with the callback tag that
//   completes it; the definition here releases on the tag's address and calls the library's;
// - every callback runs through its tag's StaticRun, which libgrpc calls through the tag's
//   function pointer; the definitions here replace gRPC's inline ones (the executable's strong
//   definition wins over the headers' weak ones, and, exported, over libgrpc++'s), acquire on
//   the tag's address and run the tag as gRPC's own StaticRun does (tsan_grpc_tags.cc);
// - a server call's OnDone is scheduled through ServerCallbackCall::ScheduleOnDone, whose
//   definition here acquires on the call's count of outstanding callbacks (below says why).
// So what a thread did before it started an operation happens before that operation's callback,
// exactly as gRPC promises; callbacks that gRPC may run at the same time (a read's and a write's)
// stay unordered, and a race between them is still reported.
//
// EXPORTD_TSAN_GRPC_ORDER=0 in the environment turns the order off again, for
// tsan_check_test.cc's check that without it the same handoffs are reported.
#include <dlfcn.h>
#include <grpc/grpc.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" void exportd_tsan_run_success_tag(grpc_completion_queue_functor* tag, int ok);
extern "C" void exportd_tsan_run_status_tag(grpc_completion_queue_functor* tag, int ok);
extern "C" void* exportd_tsan_callbacks_outstanding(void* server_callback_call);

namespace {

using StartBatch = grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*, void*);

// The shared library's definition of `name`; stops, naming it, when there is none (a gRPC other
// than the one this file was written for).
template <typename Fn>
Fn Real(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr) {
    std::fprintf(stderr, "tsan_grpc_callbacks: %s not found in the loaded gRPC: %s\n", name,
                 dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

// Whether to show gRPC's order to TSan (EXPORTD_TSAN_GRPC_ORDER is not "0").
bool ShowOrder() {
  static const bool show = [] {
    const char* value = std::getenv("EXPORTD_TSAN_GRPC_ORDER");
    return value == nullptr || std::string_view(value) != "0";
  }();
  return show;
}

}  // namespace

extern "C" grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops, size_t nops,
                                                 void* tag, void* reserved) {
  static const auto real = Real<StartBatch>("grpc_call_start_batch");
  if (ShowOrder()) __tsan_release(tag);
  return real(call, ops, nops, tag, reserved);
}

// grpc::internal::CallbackWithSuccessTag::StaticRun(grpc_completion_queue_functor*, int): the
// tag of a reactor's operations (streams, and a server's unary Finish).
extern "C" void
_ZN4grpc8internal22CallbackWithSuccessTag9StaticRunEP29grpc_completion_queue_functori(
    grpc_completion_queue_functor* tag, int ok) {
  if (ShowOrder()) __tsan_acquire(tag);
  exportd_tsan_run_success_tag(tag, ok);
}

// grpc::internal::CallbackWithStatusTag::StaticRun: the tag of a client's unary callback call.
extern "C" void
_ZN4grpc8internal21CallbackWithStatusTag9StaticRunEP29grpc_completion_queue_functori(
    grpc_completion_queue_functor* tag, int ok) {
  if (ShowOrder()) __tsan_acquire(tag);
  exportd_tsan_run_status_tag(tag, ok);
}

// grpc::internal::ServerCallbackCall::ScheduleOnDone(bool): a server call runs its reactor's
// OnDone once its count of outstanding callbacks reaches zero. The callbacks compiled from gRPC's
// headers count down with atomics TSan sees, but libgrpc++'s own (the one after OnCancel) does
// not, and when it is the last, OnDone's thread had seen none of the earlier ones. Acquiring on
// the count's address before OnDone is scheduled orders it after every callback that counted
// down, as gRPC does.
extern "C" void _ZN4grpc8internal18ServerCallbackCall14ScheduleOnDoneEb(void* call,
                                                                        bool inline_ondone) {
  using ScheduleOnDone = void (*)(void*, bool);
  static const auto real =
      Real<ScheduleOnDone>("_ZN4grpc8internal18ServerCallbackCall14ScheduleOnDoneEb");
  if (ShowOrder()) __tsan_acquire(exportd_tsan_callbacks_outstanding(call));
  real(call, inline_ondone);
}
