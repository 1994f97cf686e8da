// TestServer: a real ExportServer on a fresh temporary directory, listening on a free loopback
// port, with a stub whose every call carries a deadline. For service tests.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "exportjobs/v1/export_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/export_server.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {

using ::exportd::test_support::TempDir;

using exportjobs::v1::CreateExportJobRequest;
using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportService;

inline constexpr auto kCallTimeout = std::chrono::seconds(10);

// A client context whose deadline is kCallTimeout from now.
inline std::unique_ptr<grpc::ClientContext> Deadlined() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  return context;
}

// A channel of its own (not shared with other channels to the same address).
inline std::shared_ptr<grpc::Channel> NewChannel(const std::string& address, int index = 0) {
  grpc::ChannelArguments args;
  args.SetInt("exportd.test_channel", index);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

class TestServer {
 public:
  explicit TestServer(ServerOptions options = {}) {
    options.data_dir = dir_.path();
    options.grpc_address = "127.0.0.1:0";
    options.http_address = "127.0.0.1:0";
    options.shutdown_grace = absl::Seconds(5);
    // Tests of everything but authentication run without it; auth tests set options.auth.
    if (!options.auth) options.insecure_no_auth = true;
    auto server = ExportServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return;
    server_ = *std::move(server);
    stub_ = ExportService::NewStub(NewChannel(server_->grpc_address()));
  }

  ExportServer& server() { return *server_; }
  const std::string& data_dir() const { return dir_.path(); }
  ExportService::Stub& stub() { return *stub_; }
  const std::string& address() const { return server_->grpc_address(); }

  grpc::Status Create(const CreateExportJobRequest& request, ExportJob* job) {
    return stub_->CreateExportJob(Deadlined().get(), request, job);
  }
  grpc::Status Get(const std::string& id, ExportJob* job) {
    exportjobs::v1::GetExportJobRequest request;
    request.set_id(id);
    return stub_->GetExportJob(Deadlined().get(), request, job);
  }
  grpc::Status Cancel(const std::string& id, ExportJob* job) {
    exportjobs::v1::CancelExportJobRequest request;
    request.set_id(id);
    return stub_->CancelExportJob(Deadlined().get(), request, job);
  }
  grpc::Status Delete(const std::string& id) {
    exportjobs::v1::DeleteExportJobRequest request;
    request.set_id(id);
    google::protobuf::Empty empty;
    return stub_->DeleteExportJob(Deadlined().get(), request, &empty);
  }
  grpc::Status List(const exportjobs::v1::ListExportJobsRequest& request,
                    exportjobs::v1::ListExportJobsResponse* response) {
    return stub_->ListExportJobs(Deadlined().get(), request, response);
  }

 private:
  TempDir dir_;
  std::unique_ptr<ExportServer> server_;
  std::unique_ptr<ExportService::Stub> stub_;
};

// A valid create request: accounts with two fields, or another entity with its defaults.
inline CreateExportJobRequest AccountsRequest(
    exportjobs::v1::EntityType entity_type = exportjobs::v1::ENTITY_TYPE_ACCOUNTS) {
  CreateExportJobRequest request;
  request.set_entity_type(entity_type);
  if (entity_type == exportjobs::v1::ENTITY_TYPE_ACCOUNTS) {
    request.add_fields("name");
    request.add_fields("domain");
  }
  return request;
}

}  // namespace exportd::testing
