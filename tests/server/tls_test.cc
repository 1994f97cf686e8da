// TLS and mutual TLS on the gRPC port of a real in-process export-server. A throwaway CA, a
// server certificate and client certificates are made at test time with the openssl CLI.
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "exportjobs/v1/export_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/export_server.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {
namespace {

using ::exportd::test_support::TempDir;
using ::testing::HasSubstr;

const std::string kToken = "tls-client-token-00001";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs a shell command; true when it exits 0.
bool Shell(const std::string& command) { return std::system((command + " 2>&1").c_str()) == 0; }

// A CA (<dir>/<name>-ca.{crt,key}); REQUIRES: openssl on PATH.
bool MakeCa(const std::string& dir, const std::string& name) {
  return Shell(absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
      "-nodes -days 2 -subj /CN=",
      name, "-ca -keyout ", dir, "/", name, "-ca.key -out ", dir, "/", name, "-ca.crt"));
}

// A certificate <dir>/<name>.{crt,key} signed by the CA `ca`, for `usage` (serverAuth or
// clientAuth), valid for localhost and 127.0.0.1.
bool MakeCert(const std::string& dir, const std::string& ca, const std::string& name,
              const std::string& usage) {
  const std::string ext = absl::StrCat(dir, "/", name, ".ext");
  std::ofstream(ext) << "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=" << usage
                     << "\n";
  return Shell(absl::StrCat("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                          "-subj /CN=",
                          name, " -keyout ", dir, "/", name, ".key -out ", dir, "/", name,
                          ".csr")) &&
         Shell(absl::StrCat("openssl x509 -req -days 2 -in ", dir, "/", name, ".csr -CA ", dir, "/",
                          ca, "-ca.crt -CAkey ", dir, "/", ca, "-ca.key -CAcreateserial -out ", dir,
                          "/", name, ".crt -extfile ", ext));
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Shell("openssl version")) << "the openssl CLI is needed (deploy/install-deps.sh)";
    ASSERT_TRUE(MakeCa(certs_.path(), "test"));
    ASSERT_TRUE(MakeCa(certs_.path(), "other"));
    ASSERT_TRUE(MakeCert(certs_.path(), "test", "server", "serverAuth"));
    ASSERT_TRUE(MakeCert(certs_.path(), "test", "client", "clientAuth"));
    ASSERT_TRUE(MakeCert(certs_.path(), "other", "stranger", "clientAuth"));
  }

  std::string Path(const std::string& name) const { return certs_.path() + "/" + name; }

  void StartServer(bool mutual) {
    ServerOptions options;
    options.data_dir = data_.path();
    options.grpc_address = "127.0.0.1:0";
    options.http_address = "127.0.0.1:0";
    absl::StatusOr<TokenTable> table = TokenTable::Parse(kToken + " svc acme client\n");
    ASSERT_OK(table.status());
    options.auth = Authenticator::FromTable(*std::move(table));
    options.tls_cert_file = Path("server.crt");
    options.tls_key_file = Path("server.key");
    if (mutual) options.tls_client_ca_file = Path("test-ca.crt");
    ASSERT_OK_AND_ASSIGN(server_, ExportServer::Start(options));
  }

  // ListExportJobs over a channel with `credentials`.
  grpc::Status List(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    auto stub = exportjobs::v1::ExportService::NewStub(
        grpc::CreateCustomChannel(server_->grpc_address(), credentials, args));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    context.AddMetadata("authorization", "Bearer " + kToken);
    exportjobs::v1::ListExportJobsRequest request;
    exportjobs::v1::ListExportJobsResponse response;
    return stub->ListExportJobs(&context, request, &response);
  }

  std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& cert = "") {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFile(Path("test-ca.crt"));
    if (!cert.empty()) {
      ssl.pem_cert_chain = ReadFile(Path(cert + ".crt"));
      ssl.pem_private_key = ReadFile(Path(cert + ".key"));
    }
    return grpc::SslCredentials(ssl);
  }

  TempDir certs_;
  TempDir data_;
  std::unique_ptr<ExportServer> server_;
};

TEST_F(TlsTest, MutualTlsAcceptsOnlyClientsWithACertificateFromTheCa) {
  StartServer(/*mutual=*/true);
  grpc::Status ok = List(Tls("client"));
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  // No client certificate, one from another CA, or plaintext: the handshake fails.
  EXPECT_EQ(List(Tls()).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(List(Tls("stranger")).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(List(grpc::InsecureChannelCredentials()).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsStillNeedsAToken) {
  StartServer(/*mutual=*/true);
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto stub = exportjobs::v1::ExportService::NewStub(
      grpc::CreateCustomChannel(server_->grpc_address(), Tls("client"), args));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  exportjobs::v1::ListExportJobsRequest request;
  exportjobs::v1::ListExportJobsResponse response;
  EXPECT_EQ(stub->ListExportJobs(&context, request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TlsTest, ServerOnlyTlsAcceptsClientsWithoutACertificate) {
  StartServer(/*mutual=*/false);
  grpc::Status ok = List(Tls());
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(List(grpc::InsecureChannelCredentials()).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(TlsOptionsTest, IncompleteOrUnreadableTlsFilesRefuseToStart) {
  TempDir data;
  ServerOptions options;
  options.data_dir = data.path();
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "127.0.0.1:0";
  options.insecure_no_auth = true;
  options.tls_cert_file = data.path() + "/missing.crt";
  EXPECT_THAT(ExportServer::Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls_cert, tls_key")));
  options.tls_key_file = data.path() + "/missing.key";
  EXPECT_THAT(ExportServer::Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing.crt")));
  options.tls_cert_file.clear();
  options.tls_key_file.clear();
  options.tls_client_ca_file = data.path() + "/ca.crt";
  EXPECT_THAT(ExportServer::Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls_client_ca")));
}

}  // namespace
}  // namespace exportd::testing
