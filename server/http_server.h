// HttpServer: the export-server's HTTP port. Serves the signed download URLs that
// DownloadSigner makes, a read-only JSON view of the jobs, and a health check:
//
//   GET|HEAD /v1/export-jobs/<id>/file?expires=<s>&sig=<hex>       the whole file
//   GET|HEAD /v1/export-jobs/<id>/parts/<n>?expires=<s>&sig=<hex>   part n (from 1)
//   GET|HEAD /v1/export-jobs?status=&entity_type=&page_size=&page_token=
//                                                                  jobs, newest first (JSON)
//   GET|HEAD /v1/export-jobs/<id>                                  one job (JSON)
//   GET|HEAD /metrics                                               the Prometheus text format
//   GET|HEAD /healthz                                               200 "ok" (liveness)
//   GET|HEAD /readyz                                                200 "ready", or 503
//                                                                  "not ready: <reason>"
//
// Authentication: /healthz, /readyz and downloads need no token (a download URL is authenticated
// by its signature, which covers the job's tenant); the JSON view needs a bearer token
// (`Authorization: Bearer <token>`) of a client (its tenant's jobs) or an admin (all jobs), and
// /metrics an admin's token; see Options::authorize. A missing, malformed or unknown token is
// 401 with `WWW-Authenticate: Bearer`; a token of the wrong role 403.
//
// Every path is read-only: any other method is answered 405 with "Allow: GET, HEAD" (404 for a
// path the server does not serve).
//
// The JSON view answers with the ExportJob JSON form of common/job_json.h:
// {"export_jobs": [...], "next_page_token": "..."} (no token on the last page) for the list, the
// job itself for one job. status and entity_type take the schema's lowercase names ("pending",
// "buying_groups"). It reads through Options::get_job and list_jobs, which the export-server
// points at the same checks and JobManager reads as GetExportJob and ListExportJobs: the same
// page sizes (50 by default, at most 1000), page tokens and errors. Errors are a JSON object
// {"error": {"code": <HTTP status>, "status": "NOT_FOUND", "message": "..."}} (see
// server/job_view.h): 400 for a bad parameter (the message names it), 404 for an unknown job,
// 503 while the jobs cannot be read (the server is starting or stopping), 504 when the read
// took too long.
//
// A download is checked in this order, and the first failure answers:
//   404 a part number that is not a positive integer (no URL is signed for one);
//   403 the signature is missing, malformed or wrong (checked before anything is looked up);
//   410 the URL has expired;
//   404 no such job;
//   403 the job belongs to another tenant than the one the URL was signed for;
//   409 the job is not completed;
//   410 the job's expires_at has passed;
//   404 no such part, or a part file is missing;
//   503 / 500 the store or the file system failed.
// Then 304 when If-None-Match matches the ETag; else 200 with the file, or 206 for one byte
// range (Range; If-Range with another ETag makes it 200), or 416 for an unsatisfiable range
// (see server/http_range.h, which also says when a Range header is ignored). Successful
// responses carry Content-Length, Content-Type, Content-Disposition (attachment; filename),
// ETag, Accept-Ranges: bytes and Cache-Control: private. Error bodies of downloads are one line
// of plain text naming the reason.
//
// The body is streamed from the part files in chunks (pread), never read whole into memory.
// Requests run on the server's own thread pool (Options::threads), never on gRPC threads;
// the store and the part files are read there, and the JSON view waits there for its reads.
//
// Thread safety: port(), address() and Stop() may be called from any thread; Stop() is
// idempotent and also runs on destruction.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "exportjobs/v1/export_service.pb.h"
#include "server/download_signer.h"
#include "storage/blob_store.h"
#include "storage/job_store.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace exportd {

class HttpServer {
 public:
  struct Options {
    // HOST:PORT ("[::1]:8080" for IPv6); port 0 picks a free port (see port()).
    std::string address = "127.0.0.1:8080";
    // Not owned; each must be set and outlive the server.
    const JobStore* jobs = nullptr;
    const BlobStore* blobs = nullptr;
    const DownloadSigner* signer = nullptr;
    const Clock* clock = Clock::Real();
    // Requests served at once (each a thread).
    int threads = 8;
    // The JSON view's reads for a caller whose tenant scope (server/tenancy.h) is `scope`: one
    // job (NOT_FOUND when there is none in the scope) and one page of the list. Called on the
    // server's threads, where they may block. Unset: the JSON view paths are not served (404).
    std::function<absl::StatusOr<ExportJob>(const std::string& id, const std::string& scope)>
        get_job;
    std::function<absl::StatusOr<exportjobs::v1::ListExportJobsResponse>(
        const exportjobs::v1::ListExportJobsRequest& request, const std::string& scope)>
        list_jobs;
    // Checks the Authorization header (nullopt when absent) of a request for the JSON view
    // (admin_only false) or /metrics (admin_only true) and returns the caller's tenant scope.
    // UNAUTHENTICATED answers 401 with `WWW-Authenticate: Bearer`, PERMISSION_DENIED 403, both
    // with the JSON error body. Called on the server's threads; must not block. Unset: no check,
    // every caller has the scope of all tenants (tests of the port itself).
    std::function<absl::StatusOr<std::string>(const std::optional<std::string>& authorization,
                                              bool admin_only)>
        authorize;
    // The body of GET /metrics (the Prometheus text format). Called on the server's threads;
    // must not block long. Unset: /metrics is not served (404).
    std::function<std::string()> metrics;
    // Whether the server is ready (GET /readyz): OK, or the reason it is not. Called on the
    // server's threads; must not block. Unset: /readyz is not served (404).
    std::function<absl::Status()> readiness;
  };

  // Binds options.address and starts serving on threads of its own.
  // Errors: INVALID_ARGUMENT for a malformed address, a missing dependency or threads < 1;
  // UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const Options& options);

  // Stops the server (see Stop).
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The port the server listens on (the one picked when options.address asked for port 0).
  int port() const { return port_; }

  // HOST:PORT with the real port, e.g. "127.0.0.1:41234".
  std::string address() const;

  // Stops accepting connections, lets the requests being served finish (a download in
  // progress stops at its next chunk), and joins every thread. Idempotent.
  // REQUIRES: not called from one of the server's own threads.
  void Stop();

 private:
  HttpServer(Options options, std::string host);

  const Options options_;
  // As given in options.address (IPv6 with its brackets).
  const std::string host_;
  // Set by Start before the server is returned; constant afterwards.
  int port_ = 0;
  const std::unique_ptr<httplib::Server> server_;

  std::mutex stop_mu_;
  std::thread listener_ ABSL_GUARDED_BY(stop_mu_);
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
};

}  // namespace exportd
