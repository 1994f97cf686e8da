// End-to-end tests of export-server as a process: what it acknowledged survives kill -9, SIGTERM
// shuts it down cleanly with open watch streams, and it refuses a data directory it cannot use.
//
// Each test runs the real binary (EXPORT_SERVER_PATH) on a fresh temporary directory and port 0
// and talks to it over gRPC, every call with a deadline. Nothing sleeps to synchronise: the kill
// happens when the N-th acknowledgement arrives, and waits are for events, with deadlines.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/catalog.h"
#include "exportjobs/v1/export_service.grpc.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "tests/support/server_process.h"

#ifndef EXPORT_SERVER_PATH
#error "EXPORT_SERVER_PATH must name the export-server binary"
#endif

namespace exportd {
namespace {

using exportjobs::v1::CancelExportJobRequest;
using exportjobs::v1::CreateExportJobRequest;
using exportjobs::v1::DeleteExportJobRequest;
using exportjobs::v1::EntityType;
using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportJobEvent;
using exportjobs::v1::ExportJobStatus;
using exportjobs::v1::ExportService;
using exportjobs::v1::GetExportJobRequest;
using exportjobs::v1::ListExportJobsRequest;
using exportjobs::v1::ListExportJobsResponse;
using exportjobs::v1::WatchExportJobRequest;
using exportjobs::v1::WatchExportJobsRequest;
using google::protobuf::util::MessageDifferencer;
using test_support::ServerProcess;
using test_support::TempDir;

constexpr absl::Duration kCallTimeout = absl::Seconds(10);
constexpr absl::Duration kShutdownTimeout = absl::Seconds(30);

// ---------------------------------------------------------------------------------------------
// Helpers: the server, the client, and job comparisons.

ServerProcess::Options ServerOptions(const std::string& data_dir) {
  ServerProcess::Options options;
  options.binary = EXPORT_SERVER_PATH;
  options.data_dir = data_dir;
  options.grpc_address = "127.0.0.1:0";
  return options;
}

std::string StatusText(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), " (", status.error_message(), ")");
}

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout = kCallTimeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// A blocking client of one server; every call has a deadline. Thread-safe.
class Client {
 public:
  explicit Client(const std::string& address) {
    grpc::ChannelArguments args;
    // A channel of its own, not shared with other clients of the same address.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channel_ = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    stub_ = ExportService::NewStub(channel_);
  }

  ExportService::Stub* stub() { return stub_.get(); }

  grpc::Status Create(const CreateExportJobRequest& request, ExportJob* job) {
    grpc::ClientContext context;
    SetDeadline(context);
    return stub_->CreateExportJob(&context, request, job);
  }

  grpc::Status Get(const std::string& id, ExportJob* job) {
    grpc::ClientContext context;
    SetDeadline(context);
    GetExportJobRequest request;
    request.set_id(id);
    return stub_->GetExportJob(&context, request, job);
  }

  grpc::Status Cancel(const std::string& id, ExportJob* job) {
    grpc::ClientContext context;
    SetDeadline(context);
    CancelExportJobRequest request;
    request.set_id(id);
    return stub_->CancelExportJob(&context, request, job);
  }

  grpc::Status Delete(const std::string& id) {
    grpc::ClientContext context;
    SetDeadline(context);
    DeleteExportJobRequest request;
    request.set_id(id);
    google::protobuf::Empty empty;
    return stub_->DeleteExportJob(&context, request, &empty);
  }

  // Pages through every job matching the filters, appending them to *jobs in the order listed.
  grpc::Status ListAll(std::vector<ExportJob>* jobs, int page_size,
                       ExportJobStatus status = exportjobs::v1::EXPORT_JOB_STATUS_UNSPECIFIED,
                       EntityType entity_type = exportjobs::v1::ENTITY_TYPE_UNSPECIFIED) {
    ListExportJobsRequest request;
    request.set_page_size(page_size);
    request.set_status(status);
    request.set_entity_type(entity_type);
    for (int page = 0; page < 100000; ++page) {
      grpc::ClientContext context;
      SetDeadline(context);
      ListExportJobsResponse response;
      grpc::Status result = stub_->ListExportJobs(&context, request, &response);
      if (!result.ok()) {
        return grpc::Status(result.error_code(),
                            absl::StrCat(result.error_message(), " [page ", page, ", page_token '",
                                         request.page_token(), "']"));
      }
      if (page_size > 0 && response.jobs_size() > page_size) {
        return grpc::Status(
            grpc::StatusCode::INTERNAL,
            absl::StrCat("a page of ", response.jobs_size(), " jobs for page_size ", page_size));
      }
      jobs->insert(jobs->end(), response.jobs().begin(), response.jobs().end());
      if (response.next_page_token().empty()) return grpc::Status::OK;
      request.set_page_token(response.next_page_token());
    }
    return grpc::Status(grpc::StatusCode::INTERNAL, "List did not end after 100000 pages");
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<ExportService::Stub> stub_;
};

::testing::AssertionResult SameJob(const ExportJob& actual, const ExportJob& expected) {
  if (MessageDifferencer::Equals(actual, expected)) return ::testing::AssertionSuccess();
  std::string diff;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  differencer.Compare(expected, actual);
  return ::testing::AssertionFailure()
         << "job " << expected.id() << " differs (expected -> actual):\n"
         << diff;
}

// True when `actual` is `before` after a cancel: CANCELLED, one revision on, the rest equal
// except the update time and the completion time (which a cancel may set: it ends the job).
bool IsCancelOf(const ExportJob& actual, const ExportJob& before) {
  if (actual.status() != exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED) return false;
  if (actual.revision() != before.revision() + 1) return false;
  MessageDifferencer differencer;
  const auto* descriptor = ExportJob::descriptor();
  for (const char* name : {"status", "revision", "updated_at", "completed_at"}) {
    differencer.IgnoreField(descriptor->FindFieldByName(name));
  }
  return differencer.Compare(before, actual);
}

// Checks what Create returned for `request`.
::testing::AssertionResult IsNewJobFor(const ExportJob& job,
                                       const CreateExportJobRequest& request) {
  if (job.id().empty()) return ::testing::AssertionFailure() << "no id";
  if (job.status() != exportjobs::v1::EXPORT_JOB_STATUS_PENDING) {
    return ::testing::AssertionFailure() << "status " << job.status() << ", want PENDING";
  }
  if (job.revision() != 1) return ::testing::AssertionFailure() << "revision " << job.revision();
  if (!job.has_created_at()) return ::testing::AssertionFailure() << "no created_at";
  if (job.entity_type() != request.entity_type()) {
    return ::testing::AssertionFailure() << "entity_type " << job.entity_type();
  }
  if (job.request_id() != request.request_id()) {
    return ::testing::AssertionFailure() << "request_id '" << job.request_id() << "'";
  }
  // No fields ask for the entity's default fields.
  std::vector<std::string> want(request.fields().begin(), request.fields().end());
  if (want.empty()) want = catalog::DefaultFields(*catalog::FindEntity(request.entity_type()));
  if (!std::equal(job.fields().begin(), job.fields().end(), want.begin(), want.end())) {
    return ::testing::AssertionFailure() << "fields differ";
  }
  if (!MessageDifferencer::Equals(job.filters(), request.filters())) {
    return ::testing::AssertionFailure() << "filters " << job.filters().ShortDebugString()
                                         << ", want " << request.filters().ShortDebugString();
  }
  return ::testing::AssertionSuccess();
}

// Builds varied, valid create requests: every entity type, subsets of plausible columns,
// filters of every JSON kind, both formats and compressions, default and explicit part sizes.
class RequestMaker {
 public:
  explicit RequestMaker(uint32_t seed) : random_(seed) {}

  CreateExportJobRequest Make(const std::string& request_id) {
    CreateExportJobRequest request;
    request.set_entity_type(static_cast<EntityType>(1 + Next(6)));
    const catalog::Entity& entity = *catalog::FindEntity(request.entity_type());
    // A few of the entity's fields (none: its default fields), in catalog order.
    const size_t stride = 1 + Next(3);
    for (size_t i = Next(2); i < entity.fields.size() && Next(4) != 0; i += stride) {
      request.add_fields(std::string(entity.fields[i].name));
    }
    // Filters on id (every entity has it) and on the entity's first text field.
    auto& filters = *request.mutable_filters()->mutable_fields();
    std::string text_field;
    for (const catalog::Field& field : entity.fields) {
      if (field.type == exportjobs::v1::FIELD_TYPE_STRING) {
        text_field = std::string(field.name);
        break;
      }
    }
    switch (Next(5)) {
      case 0:
        break;  // No filters at all.
      case 1:
        filters[text_field].set_string_value(Next(2) == 0 ? "US" : "DE");
        break;
      case 2: {
        auto& range = *filters["id"].mutable_struct_value()->mutable_fields();
        range["gte"].set_number_value(static_cast<double>(Next(100000)));
        range["lt"].set_number_value(1e7);
        break;
      }
      case 3: {
        auto& values = *filters[text_field].mutable_list_value();
        values.add_values()->set_string_value("software");
        values.add_values()->set_string_value("finance");
        break;
      }
      default: {
        auto& any_of = *filters["any_of"].mutable_list_value();
        (*any_of.add_values()->mutable_struct_value()->mutable_fields())[text_field].set_null_value(
            google::protobuf::NULL_VALUE);
        (*any_of.add_values()->mutable_struct_value()->mutable_fields())["id"].set_number_value(
            static_cast<double>(Next(10)));
        break;
      }
    }
    request.set_format(static_cast<exportjobs::v1::ExportFormat>(Next(3)));
    request.set_compression(static_cast<exportjobs::v1::Compression>(Next(3)));
    request.set_part_size_bytes(Next(2) == 0 ? 0 : int64_t{1} << (10 + Next(20)));
    request.set_request_id(request_id);
    return request;
  }

 private:
  size_t Next(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(random_); }

  std::mt19937 random_;
};

// Receives a watch stream and keeps what arrived. Thread-safe; waits have deadlines. The
// destructor cancels the call and waits for it to end, so a failing test cannot leave a live
// reactor behind.
class EventCollector : public grpc::ClientReadReactor<ExportJobEvent> {
 public:
  ~EventCollector() override {
    if (!started_) return;
    context_.TryCancel();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

  void WatchJob(ExportService::Stub* stub, const std::string& id, absl::Duration timeout) {
    job_request_.set_id(id);
    SetDeadline(context_, timeout);
    stub->async()->WatchExportJob(&context_, &job_request_, this);
    StartRead(&event_);
    StartCall();
    started_ = true;
  }

  void WatchJobs(ExportService::Stub* stub, absl::Duration timeout) {
    SetDeadline(context_, timeout);
    stub->async()->WatchExportJobs(&context_, &jobs_request_, this);
    StartRead(&event_);
    StartCall();
    started_ = true;
  }

  // Waits until at least `count` events arrived or the stream ended; true when they arrived.
  bool AwaitEvents(size_t count, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto arrived = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return events_.size() >= count || done_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout);
    return events_.size() >= count;
  }

  // Waits for the end of the stream; its status, or nullopt when it had not ended in time.
  std::optional<grpc::Status> AwaitDone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
    if (!done_) return std::nullopt;
    return status_;
  }

  std::vector<ExportJobEvent> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  void OnReadDone(bool ok) override {
    if (!ok) return;  // The stream ended; OnDone follows.
    {
      absl::MutexLock lock(&mu_);
      events_.push_back(event_);
    }
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

  grpc::ClientContext context_;
  WatchExportJobRequest job_request_;
  WatchExportJobsRequest jobs_request_;
  ExportJobEvent event_;  // Owned by the reactor's single outstanding read.
  bool started_ = false;  // Set by the thread that starts the call, read by the destructor.

  mutable absl::Mutex mu_;
  std::vector<ExportJobEvent> events_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// ---------------------------------------------------------------------------------------------
// The model of what the server acknowledged.

// What the client knows of one job.
struct Expected {
  CreateExportJobRequest request;  // As sent when the job was created.
  ExportJob job;                   // The last acknowledged state.
  bool deleted = false;            // The server acknowledged its delete.
  // A cancel or delete that was sent and not acknowledged (it failed or was cut off by the
  // kill): the job is in its acknowledged state or in the state that call would have made.
  enum class Unconfirmed { kNone, kCancel, kDelete } unconfirmed = Unconfirmed::kNone;
};

// One acknowledged or unconfirmed operation, in the order a load thread saw it.
struct Outcome {
  enum class Kind { kCreated, kCancelled, kDeleted, kCancelUnconfirmed, kDeleteUnconfirmed } kind;
  std::string id;
  CreateExportJobRequest request;  // kCreated only.
  ExportJob job;                   // kCreated and kCancelled.
};

// Shared state of one load cycle.
struct LoadControl {
  const int64_t kill_after;  // Acknowledgements before the kill.
  std::atomic<int64_t> acknowledged{0};
  std::atomic<int64_t> in_flight{0};
  std::atomic<bool> stop{false};
  std::atomic<int> running;  // Load threads that have not returned.
  std::mutex mu;
  // Signalled when `acknowledged` reaches kill_after, and when the last load thread returns.
  std::condition_variable changed;

  LoadControl(int64_t kill_after_count, int threads)
      : kill_after(kill_after_count), running(threads) {}

  void Acknowledge() {
    if (acknowledged.fetch_add(1) + 1 == kill_after) Notify();
  }

  void ThreadDone() {
    if (running.fetch_sub(1) == 1) Notify();
  }

 private:
  void Notify() {
    std::lock_guard<std::mutex> lock(mu);
    changed.notify_all();
  }
};

// One load thread: creates jobs (every other one with a request_id), cancels pending jobs it
// owns, deletes cancelled jobs it owns, until told to stop or the server goes away. Records
// every acknowledged result and every call whose result is unknown.
class LoadThread {
 public:
  LoadThread(Client* client, LoadControl* control, int cycle, int index,
             std::vector<std::string> pending, std::vector<std::string> cancelled)
      : client_(client),
        control_(control),
        cycle_(cycle),
        index_(index),
        requests_(static_cast<uint32_t>(cycle * 1000 + index)),
        pending_(std::move(pending)),
        cancelled_(std::move(cancelled)) {}

  void Run() {
    for (int n = 0; !control_->stop.load(); ++n) {
      bool reachable;
      if (n % 4 == 3 && !pending_.empty()) {
        reachable = CancelOne();
      } else if (n % 6 == 5 && !cancelled_.empty()) {
        reachable = DeleteOne();
      } else {
        reachable = CreateOne(n);
      }
      if (!reachable) break;
    }
  }

  const std::vector<Outcome>& outcomes() const { return outcomes_; }
  const std::vector<std::string>& errors() const { return errors_; }
  int unconfirmed_creates() const { return unconfirmed_creates_; }

 private:
  // Each returns false when the call failed in a way that means the server is gone.

  bool CreateOne(int n) {
    std::string request_id =
        n % 2 == 0 ? absl::StrCat("crash-c", cycle_, "-t", index_, "-n", n) : std::string();
    CreateExportJobRequest request = requests_.Make(request_id);
    ExportJob job;
    grpc::Status status = Call([&] { return client_->Create(request, &job); });
    if (!status.ok()) {
      ++unconfirmed_creates_;
      return Unreachable(status, "Create");
    }
    outcomes_.push_back({Outcome::Kind::kCreated, job.id(), request, job});
    pending_.push_back(job.id());
    control_->Acknowledge();
    return true;
  }

  bool CancelOne() {
    std::string id = pending_.front();
    pending_.erase(pending_.begin());
    ExportJob job;
    grpc::Status status = Call([&] { return client_->Cancel(id, &job); });
    if (!status.ok()) {
      outcomes_.push_back({Outcome::Kind::kCancelUnconfirmed, id, {}, {}});
      return Unreachable(status, absl::StrCat("Cancel ", id));
    }
    outcomes_.push_back({Outcome::Kind::kCancelled, id, {}, job});
    cancelled_.push_back(id);
    control_->Acknowledge();
    return true;
  }

  bool DeleteOne() {
    std::string id = cancelled_.front();
    cancelled_.erase(cancelled_.begin());
    grpc::Status status = Call([&] { return client_->Delete(id); });
    if (!status.ok()) {
      outcomes_.push_back({Outcome::Kind::kDeleteUnconfirmed, id, {}, {}});
      return Unreachable(status, absl::StrCat("Delete ", id));
    }
    outcomes_.push_back({Outcome::Kind::kDeleted, id, {}, {}});
    control_->Acknowledge();
    return true;
  }

  template <typename F>
  grpc::Status Call(F call) {
    control_->in_flight.fetch_add(1);
    grpc::Status status = call();
    control_->in_flight.fetch_sub(1);
    return status;
  }

  // Errors other than the server going away are recorded as test failures. Returns false.
  bool Unreachable(const grpc::Status& status, const std::string& what) {
    if (!control_->stop.load() || status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      errors_.push_back(absl::StrCat(what, " before or at the kill: ", StatusText(status)));
    }
    return false;
  }

  Client* const client_;
  LoadControl* const control_;
  const int cycle_;
  const int index_;
  RequestMaker requests_;
  std::vector<std::string> pending_;    // Acknowledged PENDING, owned by this thread.
  std::vector<std::string> cancelled_;  // Acknowledged CANCELLED, owned by this thread.
  std::vector<Outcome> outcomes_;
  std::vector<std::string> errors_;
  int unconfirmed_creates_ = 0;
};

// Problems of one kind, reported as one failure that shows the first few.
class Problems {
 public:
  explicit Problems(std::string what) : what_(std::move(what)) {}
  ~Problems() {
    if (problems_.empty()) return;
    std::string shown;
    for (size_t i = 0; i < problems_.size() && i < 10; ++i)
      absl::StrAppend(&shown, "\n  ", problems_[i]);
    if (problems_.size() > 10) absl::StrAppend(&shown, "\n  ...");
    ADD_FAILURE() << problems_.size() << " " << what_ << ":" << shown;
  }
  void Add(std::string problem) { problems_.push_back(std::move(problem)); }

 private:
  const std::string what_;
  std::vector<std::string> problems_;
};

// Checks the restarted server against `model` and folds the outcome of unconfirmed calls into
// it: afterwards every job in the model has a known state.
void VerifyRecovered(Client& client, std::map<std::string, Expected>& model) {
  int checked = 0;
  {
    Problems lost("acknowledged jobs lost (Get fails)");
    Problems resurrected("acknowledged deletes undone (Get finds the job)");
    Problems changed("jobs that differ from their last acknowledged state");
    for (auto& [id, expected] : model) {
      ExportJob job;
      grpc::Status status = client.Get(id, &job);
      if (expected.deleted) {
        if (status.error_code() != grpc::StatusCode::NOT_FOUND) {
          resurrected.Add(absl::StrCat(id, ": ", StatusText(status), " ", job.ShortDebugString()));
        }
        continue;
      }
      if (expected.unconfirmed == Expected::Unconfirmed::kDelete &&
          status.error_code() == grpc::StatusCode::NOT_FOUND) {
        expected.deleted = true;  // The unacknowledged delete happened: allowed.
        expected.unconfirmed = Expected::Unconfirmed::kNone;
        continue;
      }
      if (!status.ok()) {
        lost.Add(absl::StrCat(id, ": ", StatusText(status)));
        expected.deleted = true;  // Keeps the later checks about other jobs meaningful.
        continue;
      }
      if (expected.unconfirmed == Expected::Unconfirmed::kCancel && IsCancelOf(job, expected.job)) {
        expected.job = job;  // The unacknowledged cancel happened: allowed.
      } else if (::testing::AssertionResult same = SameJob(job, expected.job); !same) {
        changed.Add(same.message());
      }
      expected.unconfirmed = Expected::Unconfirmed::kNone;
      ++checked;
    }
  }

  // Everything, newest first, in pages small enough to need many.
  std::vector<ExportJob> listed;
  grpc::Status status = client.ListAll(&listed, /*page_size=*/97);
  ASSERT_TRUE(status.ok()) << "List: " << StatusText(status);
  std::set<std::string> listed_ids;
  int live = 0;
  {
    Problems order("List entries not strictly newest first");
    Problems deleted("deleted jobs in List");
    Problems differs("List entries that differ from the acknowledged state");
    Problems missing("acknowledged jobs missing from List");
    for (size_t i = 0; i < listed.size(); ++i) {
      listed_ids.insert(listed[i].id());
      if (i > 0 && !(listed[i - 1].id() > listed[i].id())) {
        order.Add(
            absl::StrCat("[", i - 1, "] ", listed[i - 1].id(), ", [", i, "] ", listed[i].id()));
      }
      auto it = model.find(listed[i].id());
      if (it == model.end()) continue;  // A create that was cut off by the kill but happened.
      if (it->second.deleted) {
        deleted.Add(listed[i].id());
      } else if (::testing::AssertionResult same = SameJob(listed[i], it->second.job); !same) {
        differs.Add(same.message());
      }
    }
    for (const auto& [id, expected] : model) {
      if (expected.deleted) continue;
      ++live;
      if (!listed_ids.contains(id)) missing.Add(id);
    }
  }

  // Filtered by status: the cancelled jobs are exactly the ones the model knows (a job is only
  // ever cancelled after its create was acknowledged).
  std::vector<ExportJob> cancelled;
  status = client.ListAll(&cancelled, /*page_size=*/0, exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  ASSERT_TRUE(status.ok()) << "List(CANCELLED): " << StatusText(status);
  {
    Problems missing("cancelled jobs missing from List(CANCELLED)");
    Problems extra("unexpected jobs in List(CANCELLED)");
    std::set<std::string> cancelled_ids;
    for (const ExportJob& job : cancelled) {
      cancelled_ids.insert(job.id());
      auto it = model.find(job.id());
      if (it == model.end() || it->second.deleted ||
          it->second.job.status() != exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED) {
        extra.Add(job.ShortDebugString());
      }
    }
    for (const auto& [id, expected] : model) {
      if (!expected.deleted &&
          expected.job.status() == exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED &&
          !cancelled_ids.contains(id)) {
        missing.Add(id);
      }
    }
  }

  // Filtered by entity type: only that type, and every known job of that type.
  std::vector<ExportJob> people;
  status =
      client.ListAll(&people, /*page_size=*/1000, exportjobs::v1::EXPORT_JOB_STATUS_UNSPECIFIED,
                     exportjobs::v1::ENTITY_TYPE_PEOPLE);
  ASSERT_TRUE(status.ok()) << "List(PEOPLE): " << StatusText(status);
  {
    Problems wrong("jobs of another entity type in List(PEOPLE)");
    Problems missing("PEOPLE jobs missing from List(PEOPLE)");
    std::set<std::string> people_ids;
    for (const ExportJob& job : people) {
      if (job.entity_type() != exportjobs::v1::ENTITY_TYPE_PEOPLE) wrong.Add(job.id());
      people_ids.insert(job.id());
    }
    for (const auto& [id, expected] : model) {
      if (!expected.deleted && expected.job.entity_type() == exportjobs::v1::ENTITY_TYPE_PEOPLE &&
          !people_ids.contains(id)) {
        missing.Add(id);
      }
    }
  }

  // A retried create with an acknowledged request_id returns that job, and creates nothing.
  int retried = 0;
  {
    Problems failed("retried creates that failed");
    Problems other_job("retried creates that returned another job");
    Problems other_state("retried creates that returned another state of the job");
    for (const auto& [id, expected] : model) {
      if (expected.deleted || expected.request.request_id().empty()) continue;
      ++retried;
      ExportJob job;
      status = client.Create(expected.request, &job);
      if (!status.ok()) {
        failed.Add(absl::StrCat(expected.request.request_id(), ": ", StatusText(status)));
      } else if (job.id() != id) {
        other_job.Add(absl::StrCat(expected.request.request_id(), ": ", job.id(), ", want ", id));
      } else if (::testing::AssertionResult same = SameJob(job, expected.job); !same) {
        other_state.Add(same.message());
      }
    }
  }
  std::vector<ExportJob> after_retries;
  status = client.ListAll(&after_retries, /*page_size=*/1000);
  ASSERT_TRUE(status.ok()) << "List: " << StatusText(status);
  EXPECT_EQ(after_retries.size(), listed.size()) << "retried creates changed the number of jobs";

  std::cerr << "[ verified ] " << checked << " jobs by Get, " << listed.size() << " listed ("
            << live << " acknowledged live), " << retried << " creates retried\n";
}

// ---------------------------------------------------------------------------------------------
// The tests.

TEST(CrashRecoveryTest, AcknowledgedWritesSurviveKill9UnderLoad) {
  constexpr int kCycles = 3;
  constexpr int kThreads = 8;
  absl::StatusOr<TempDir> dir = TempDir::Create("exportd-crash-");
  ASSERT_TRUE(dir.ok()) << dir.status();
  const std::string data_dir = dir->path() + "/data";

  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(ServerOptions(data_dir));
  ASSERT_TRUE(server.ok()) << server.status();

  std::map<std::string, Expected> model;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    SCOPED_TRACE(absl::StrCat("cycle ", cycle));
    Client client((*server)->address());

    // Hand the jobs from earlier cycles to the load threads: pending ones to cancel, cancelled
    // ones to delete.
    std::vector<std::vector<std::string>> pending(kThreads), cancelled(kThreads);
    int next = 0;
    for (const auto& [id, expected] : model) {
      if (expected.deleted) continue;
      if (expected.job.status() == exportjobs::v1::EXPORT_JOB_STATUS_PENDING) {
        pending[next++ % kThreads].push_back(id);
      } else if (expected.job.status() == exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED) {
        cancelled[next++ % kThreads].push_back(id);
      }
    }

    LoadControl control(/*kill_after_count=*/300 + 150 * cycle, kThreads);
    std::vector<std::unique_ptr<LoadThread>> loads;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      loads.push_back(std::make_unique<LoadThread>(&client, &control, cycle, t,
                                                   std::move(pending[t]), std::move(cancelled[t])));
    }
    for (auto& load : loads) {
      threads.emplace_back([&load, &control] {
        load->Run();
        control.ThreadDone();
      });
    }

    {
      std::unique_lock<std::mutex> lock(control.mu);
      control.changed.wait_for(lock, std::chrono::seconds(120), [&] {
        return control.acknowledged.load() >= control.kill_after || control.running.load() == 0;
      });
    }
    const bool reached = control.acknowledged.load() >= control.kill_after;
    const int64_t in_flight_at_kill = control.in_flight.load();
    control.stop = true;
    absl::Status killed = (*server)->Kill9();
    for (std::thread& thread : threads) thread.join();
    ASSERT_TRUE(killed.ok()) << killed;
    for (const auto& load : loads) {
      for (const std::string& error : load->errors()) ADD_FAILURE() << error;
    }
    ASSERT_TRUE(reached) << "only " << control.acknowledged.load() << " of " << control.kill_after
                         << " acknowledgements; server stderr:\n"
                         << (*server)->StderrTail();

    int unconfirmed = 0;
    for (const auto& load : loads) {
      unconfirmed += load->unconfirmed_creates();
      for (const Outcome& outcome : load->outcomes()) {
        switch (outcome.kind) {
          case Outcome::Kind::kCreated: {
            EXPECT_TRUE(IsNewJobFor(outcome.job, outcome.request))
                << "Create returned " << outcome.job.ShortDebugString();
            EXPECT_FALSE(model.contains(outcome.id)) << "Create returned a known id";
            Expected& expected = model[outcome.id];
            expected.request = outcome.request;
            expected.job = outcome.job;
            break;
          }
          case Outcome::Kind::kCancelled: {
            Expected& expected = model.at(outcome.id);
            EXPECT_TRUE(IsCancelOf(outcome.job, expected.job))
                << "Cancel of " << expected.job.ShortDebugString() << " returned "
                << outcome.job.ShortDebugString();
            expected.job = outcome.job;
            break;
          }
          case Outcome::Kind::kDeleted:
            model.at(outcome.id).deleted = true;
            break;
          case Outcome::Kind::kCancelUnconfirmed:
            model.at(outcome.id).unconfirmed = Expected::Unconfirmed::kCancel;
            ++unconfirmed;
            break;
          case Outcome::Kind::kDeleteUnconfirmed:
            model.at(outcome.id).unconfirmed = Expected::Unconfirmed::kDelete;
            ++unconfirmed;
            break;
        }
      }
    }
    std::cerr << "[ cycle " << cycle << " ] killed after " << control.acknowledged.load()
              << " acknowledgements with " << in_flight_at_kill << " calls in flight; "
              << unconfirmed << " calls unconfirmed; " << model.size() << " jobs known\n";

    server = ServerProcess::Start(ServerOptions(data_dir));
    ASSERT_TRUE(server.ok()) << "restart after kill -9: " << server.status();
    Client recovered((*server)->address());
    VerifyRecovered(recovered, model);
    if (::testing::Test::HasFatalFailure()) return;
  }

  absl::StatusOr<test_support::ExitStatus> exit = (*server)->Terminate(kShutdownTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString() << "; stderr:\n" << (*server)->StderrTail();
}

TEST(CrashRecoveryTest, SigtermExitsCleanlyEndsWatchesAndKeepsJobs) {
  absl::StatusOr<TempDir> dir = TempDir::Create("exportd-sigterm-");
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(ServerOptions(dir->path()));
  ASSERT_TRUE(server.ok()) << server.status();

  std::map<std::string, ExportJob> jobs;  // Last acknowledged state of the live jobs.
  std::vector<std::string> deleted;
  std::vector<std::string> order;
  {
    Client client((*server)->address());
    RequestMaker requests(7);
    for (int i = 0; i < 12; ++i) {
      CreateExportJobRequest request =
          requests.Make(i % 3 == 0 ? absl::StrCat("sigterm-", i) : std::string());
      ExportJob job;
      grpc::Status status = client.Create(request, &job);
      ASSERT_TRUE(status.ok()) << "Create: " << StatusText(status);
      jobs[job.id()] = job;
      order.push_back(job.id());
    }
    for (int i = 0; i < 4; ++i) {
      ExportJob job;
      grpc::Status status = client.Cancel(order[i], &job);
      ASSERT_TRUE(status.ok()) << "Cancel: " << StatusText(status);
      jobs[job.id()] = job;
    }
    grpc::Status status = client.Delete(order[0]);
    ASSERT_TRUE(status.ok()) << "Delete: " << StatusText(status);
    jobs.erase(order[0]);
    deleted.push_back(order[0]);
  }

  // Open streams at the moment of SIGTERM: one job's watch, and a watch of all jobs that has
  // proved to be registered by receiving an event.
  Client client((*server)->address());
  const std::string watched = order.back();
  EventCollector job_watch;
  job_watch.WatchJob(client.stub(), watched, absl::Minutes(5));
  ASSERT_TRUE(job_watch.AwaitEvents(1, kCallTimeout)) << "no snapshot from WatchExportJob";
  {
    ExportJobEvent snapshot = job_watch.events().front();
    EXPECT_EQ(snapshot.kind(), ExportJobEvent::KIND_SNAPSHOT);
    EXPECT_EQ(snapshot.revision(), snapshot.job().revision());
    EXPECT_TRUE(SameJob(snapshot.job(), jobs.at(watched)));
  }
  EventCollector all_watch;
  all_watch.WatchJobs(client.stub(), absl::Minutes(5));
  // The all-jobs watch sends nothing until a change; create until one reaches it.
  bool all_watch_live = false;
  for (int i = 0; i < 50 && !all_watch_live; ++i) {
    ExportJob job;
    grpc::Status status = client.Create(RequestMaker(100 + i).Make(""), &job);
    ASSERT_TRUE(status.ok()) << "Create: " << StatusText(status);
    jobs[job.id()] = job;
    all_watch_live = all_watch.AwaitEvents(1, absl::Milliseconds(200));
  }
  ASSERT_TRUE(all_watch_live) << "WatchExportJobs received no event for 50 creates";
  {
    ExportJobEvent event = all_watch.events().front();
    EXPECT_EQ(event.kind(), ExportJobEvent::KIND_CHANGED);
    EXPECT_TRUE(jobs.contains(event.job().id())) << event.ShortDebugString();
  }

  absl::StatusOr<test_support::ExitStatus> exit = (*server)->Terminate(kShutdownTimeout);
  ASSERT_TRUE(exit.ok()) << "SIGTERM with open watch streams: " << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString() << "; stderr:\n" << (*server)->StderrTail();
  std::optional<grpc::Status> job_watch_end = job_watch.AwaitDone(kCallTimeout);
  EXPECT_TRUE(job_watch_end.has_value()) << "WatchExportJob still open after the server exited";
  std::optional<grpc::Status> all_watch_end = all_watch.AwaitDone(kCallTimeout);
  EXPECT_TRUE(all_watch_end.has_value()) << "WatchExportJobs still open after the server exited";
  if (job_watch_end.has_value()) {
    std::cerr << "[ sigterm ] WatchExportJob ended with " << StatusText(*job_watch_end) << "\n";
  }
  if (all_watch_end.has_value()) {
    std::cerr << "[ sigterm ] WatchExportJobs ended with " << StatusText(*all_watch_end) << "\n";
  }

  server = ServerProcess::Start(ServerOptions(dir->path()));
  ASSERT_TRUE(server.ok()) << "restart after SIGTERM: " << server.status();
  Client restarted((*server)->address());
  for (const auto& [id, expected] : jobs) {
    ExportJob job;
    grpc::Status status = restarted.Get(id, &job);
    ASSERT_TRUE(status.ok()) << "Get " << id << " after restart: " << StatusText(status);
    EXPECT_TRUE(SameJob(job, expected));
  }
  for (const std::string& id : deleted) {
    ExportJob job;
    EXPECT_EQ(restarted.Get(id, &job).error_code(), grpc::StatusCode::NOT_FOUND) << id;
  }
  std::vector<ExportJob> listed;
  grpc::Status status = restarted.ListAll(&listed, /*page_size=*/5);
  ASSERT_TRUE(status.ok()) << "List: " << StatusText(status);
  std::vector<std::string> listed_ids, expected_ids;
  for (const ExportJob& job : listed) listed_ids.push_back(job.id());
  for (const auto& [id, job] : jobs) expected_ids.push_back(id);
  std::reverse(expected_ids.begin(), expected_ids.end());  // Newest first.
  EXPECT_EQ(listed_ids, expected_ids);

  exit = (*server)->Terminate(kShutdownTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
}

TEST(UnusableDataDirTest, RegularFileIsRefused) {
  absl::StatusOr<TempDir> dir = TempDir::Create("exportd-file-");
  ASSERT_TRUE(dir.ok()) << dir.status();
  const std::string file = dir->path() + "/not-a-directory";
  std::ofstream(file) << "a file, not a database\n";

  absl::StatusOr<test_support::ExitInfo> run =
      ServerProcess::RunUntilExit(ServerOptions(file), kShutdownTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_FALSE(run->status.success()) << run->status.ToString();
  const std::string stderr_text = absl::AsciiStrToLower(run->stderr_text);
  EXPECT_TRUE(stderr_text.find(absl::AsciiStrToLower(file)) != std::string::npos ||
              stderr_text.find("director") != std::string::npos)
      << "stderr names neither the path nor a directory problem:\n"
      << run->stderr_text;
}

TEST(UnusableDataDirTest, DirectoryInUseByAnotherServerIsRefused) {
  absl::StatusOr<TempDir> dir = TempDir::Create("exportd-locked-");
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::unique_ptr<ServerProcess>> first =
      ServerProcess::Start(ServerOptions(dir->path()));
  ASSERT_TRUE(first.ok()) << first.status();

  absl::StatusOr<test_support::ExitInfo> second =
      ServerProcess::RunUntilExit(ServerOptions(dir->path()), kShutdownTimeout);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->status.success()) << second->status.ToString();
  const std::string stderr_text = absl::AsciiStrToLower(second->stderr_text);
  EXPECT_TRUE(stderr_text.find("lock") != std::string::npos ||
              stderr_text.find(absl::AsciiStrToLower(dir->path())) != std::string::npos)
      << "stderr names neither the lock nor the directory:\n"
      << second->stderr_text;

  // The first server is unharmed.
  Client client((*first)->address());
  ExportJob job;
  grpc::Status status = client.Create(RequestMaker(1).Make("locked-1"), &job);
  EXPECT_TRUE(status.ok()) << StatusText(status);
  absl::StatusOr<test_support::ExitStatus> exit = (*first)->Terminate(kShutdownTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->ToString();
}

}  // namespace
}  // namespace exportd
