// Runs a gRPC callback tag the way its own StaticRun does, and finds a server call's count of
// outstanding callbacks, for tsan_grpc_callbacks.cc (the thread build only; docs/testing.md).
//
// A separate file because the replacement must not see gRPC's header, whose inline StaticRun
// would clash with it; this one includes the header and never names StaticRun. The tags' Run is
// private, and so is the count: access is not checked for the names in an explicit
// instantiation, which is how RunOf and CountOf below get pointers to them.
#include <grpcpp/support/callback_common.h>
#include <grpcpp/support/server_callback.h>

#include <atomic>

namespace {

// RunOf(tag) calls `Member` on the tag, the tag's private Run(bool).
template <typename Tag, void (Tag::*Member)(bool)>
struct RunAccess {
  friend void RunOf(Tag* tag, bool ok) { (tag->*Member)(ok); }
};
// CountOf(call) is the call's private count of the callbacks it still waits for.
template <std::atomic_int grpc::internal::ServerCallbackCall::*Member>
struct CountAccess {
  friend std::atomic_int* CountOf(grpc::internal::ServerCallbackCall* call) {
    return &(call->*Member);
  }
};
std::atomic_int* CountOf(grpc::internal::ServerCallbackCall* call);
template struct CountAccess<&grpc::internal::ServerCallbackCall::callbacks_outstanding_>;

void RunOf(grpc::internal::CallbackWithSuccessTag* tag, bool ok);
void RunOf(grpc::internal::CallbackWithStatusTag* tag, bool ok);

template struct RunAccess<grpc::internal::CallbackWithSuccessTag,
                          &grpc::internal::CallbackWithSuccessTag::Run>;
template struct RunAccess<grpc::internal::CallbackWithStatusTag,
                          &grpc::internal::CallbackWithStatusTag::Run>;

}  // namespace

extern "C" void exportd_tsan_run_success_tag(grpc_completion_queue_functor* tag, int ok) {
  RunOf(static_cast<grpc::internal::CallbackWithSuccessTag*>(tag), static_cast<bool>(ok));
}

extern "C" void exportd_tsan_run_status_tag(grpc_completion_queue_functor* tag, int ok) {
  RunOf(static_cast<grpc::internal::CallbackWithStatusTag*>(tag), static_cast<bool>(ok));
}

extern "C" void* exportd_tsan_callbacks_outstanding(grpc::internal::ServerCallbackCall* call) {
  return CountOf(call);
}
