#include "server/http_server.h"

#include <fcntl.h>
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/logging.h"
#include "common/str_cat.h"
#include "server/export_file.h"
#include "server/http_range.h"
#include "server/job_view.h"
#include "server/tenancy.h"

namespace exportd {
namespace {

// Bytes read from a part file and handed to the socket at a time.
constexpr size_t kChunkBytes = 256 << 10;
// Requests to this server have no body; anything larger is refused (413).
constexpr size_t kMaxRequestBodyBytes = 64 << 10;
constexpr time_t kReadTimeoutSeconds = 10;
constexpr time_t kWriteTimeoutSeconds = 10;
// Short, so that Stop() does not wait long for idle keep-alive connections.
constexpr time_t kKeepAliveTimeoutSeconds = 2;

constexpr std::string_view kJobsPrefix = "/v1/export-jobs/";

// What a download path names. part is 0 for the whole file and -1 for a part "number" that
// is not a positive int32.
struct DownloadTarget {
  std::string job_id;
  int32_t part = 0;
};

// Parses /v1/export-jobs/<id>/file and /v1/export-jobs/<id>/parts/<n>; nullopt for any other
// path. `path` is already percent-decoded by httplib.
std::optional<DownloadTarget> ParseDownloadPath(std::string_view path) {
  if (path.substr(0, kJobsPrefix.size()) != kJobsPrefix) return std::nullopt;
  path.remove_prefix(kJobsPrefix.size());
  const size_t slash = path.find('/');
  if (slash == 0 || slash == std::string_view::npos) return std::nullopt;
  DownloadTarget target;
  target.job_id = std::string(path.substr(0, slash));
  const std::string_view rest = path.substr(slash + 1);
  if (rest == "file") return target;
  constexpr std::string_view kParts = "parts/";
  if (rest.substr(0, kParts.size()) != kParts) return std::nullopt;
  const std::string_view number = rest.substr(kParts.size());
  if (number.empty() || number.find('/') != std::string_view::npos) return std::nullopt;
  int32_t part = 0;
  const bool digits =
      std::all_of(number.begin(), number.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || !absl::SimpleAtoi(absl::string_view(number.data(), number.size()), &part) ||
      part < 1) {
    part = -1;
  }
  target.part = part;
  return target;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// If-None-Match (RFC 9110 section 13.1.2): "*" or a list of entity tags, compared weakly.
bool NoneMatchMatches(std::string_view header, std::string_view etag) {
  while (!header.empty()) {
    const size_t comma = header.find(',');
    std::string_view tag = TrimOws(header.substr(0, comma));
    if (tag == "*") return true;
    if (tag.substr(0, 2) == "W/") tag.remove_prefix(2);
    if (tag == etag) return true;
    if (comma == std::string_view::npos) break;
    header.remove_prefix(comma + 1);
  }
  return false;
}

// httplib applies req.ranges itself to every response it writes (and for a Range value it
// cannot parse answers 416 before routing; see the error handler). So that it does exactly
// what DecideRange decided, the handler sets req.ranges: empty, or the one range to send.
// The Request object httplib passes as const is its own non-const local, so writing to it is
// defined; http_server_test covers the resulting headers and bodies.
void SetHttplibRanges(const httplib::Request& req,
                      std::optional<std::pair<int64_t, int64_t>> range) {
  auto& ranges = const_cast<httplib::Request&>(req).ranges;
  ranges.clear();
  if (range.has_value()) {
    ranges.emplace_back(static_cast<ssize_t>(range->first), static_cast<ssize_t>(range->second));
  }
}

void SetError(httplib::Response& res, int status, absl::string_view reason,
              absl::string_view message) {
  res.status = status;
  if (!res.has_header("Cache-Control")) res.set_header("Cache-Control", "no-store");
  res.set_content(absl::StrCat(reason, ": ", message, "\n"), "text/plain; charset=utf-8");
}

// The HTTP answer to a failed check or lookup of a download at `path`.
void SetErrorFromStatus(const std::string& path, httplib::Response& res,
                        const absl::Status& status) {
  const absl::string_view message = status.message();
  if (status.code() != absl::StatusCode::kPermissionDenied &&
      status.code() != absl::StatusCode::kDeadlineExceeded &&
      status.code() != absl::StatusCode::kNotFound &&
      status.code() != absl::StatusCode::kInvalidArgument &&
      status.code() != absl::StatusCode::kFailedPrecondition) {
    // The server's own failure: the operator needs the details the body leaves out.
    LogEvent(LogLevel::kWarn, "http.error", {{"path", path}, {"error", status.ToString()}});
  }
  switch (status.code()) {
    case absl::StatusCode::kPermissionDenied:
      return SetError(res, 403, "forbidden", message);
    case absl::StatusCode::kDeadlineExceeded:
      return SetError(res, 410, "gone", message);
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kInvalidArgument:
      return SetError(res, 404, "not found", message);
    case absl::StatusCode::kFailedPrecondition:
      return SetError(res, 409, "conflict", message);
    case absl::StatusCode::kUnavailable:
      // Messages of I/O errors name server paths: keep them out of the body.
      return SetError(res, 503, "unavailable", "the export cannot be read now; retry later");
    default:
      return SetError(res, 500, "internal error", "the export cannot be served");
  }
}

// Streams the pieces of an export file: each call writes at most kChunkBytes at `offset` of
// the whole (the pieces joined). One per response; httplib calls it from one thread.
class PieceReader {
 public:
  explicit PieceReader(std::vector<ExportFile::Piece> pieces) : pieces_(std::move(pieces)) {
    int64_t start = 0;
    for (const ExportFile::Piece& piece : pieces_) {
      starts_.push_back(start);
      start += piece.size_bytes;
    }
  }

  ~PieceReader() {
    if (fd_ >= 0) ::close(fd_);
  }

  PieceReader(const PieceReader&) = delete;
  PieceReader& operator=(const PieceReader&) = delete;

  // False when a file cannot be read (e.g. the janitor removed it) or the client went away;
  // httplib then closes the connection.
  bool Provide(size_t offset, size_t length, httplib::DataSink& sink) {
    const int64_t at = static_cast<int64_t>(offset);
    // The last piece starting at or before `at`; empty pieces are skipped over.
    const auto it = std::upper_bound(starts_.begin(), starts_.end(), at);
    if (it == starts_.begin()) return false;
    const size_t index = static_cast<size_t>(it - starts_.begin()) - 1;
    const int64_t in_piece = at - starts_[index];
    const int64_t left_in_piece = pieces_[index].size_bytes - in_piece;
    if (left_in_piece <= 0) return false;
    const size_t n = std::min({length, kChunkBytes, static_cast<size_t>(left_in_piece)});
    if (!Open(index)) return false;
    if (buffer_.empty()) buffer_.resize(kChunkBytes);
    size_t done = 0;
    while (done < n) {
      const ssize_t got = ::pread(fd_, buffer_.data() + done, n - done,
                                  static_cast<off_t>(in_piece) + static_cast<off_t>(done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;  // An error, or the file shrank since it was resolved.
      done += static_cast<size_t>(got);
    }
    return sink.write(buffer_.data(), n);
  }

 private:
  bool Open(size_t index) {
    if (fd_ >= 0 && open_index_ == index) return true;
    if (fd_ >= 0) ::close(fd_);
    fd_ = ::open(pieces_[index].path.c_str(), O_RDONLY | O_CLOEXEC);
    open_index_ = index;
    return fd_ >= 0;
  }

  const std::vector<ExportFile::Piece> pieces_;
  std::vector<int64_t> starts_;
  int fd_ = -1;
  size_t open_index_ = 0;
  std::vector<char> buffer_;
};

void ServeDownload(const HttpServer::Options& options, const DownloadTarget& target,
                   const httplib::Request& req, httplib::Response& res) {
  if (target.part < 0) return SetError(res, 404, "not found", "no such part");

  const absl::Time now = options.clock->Now();
  if (absl::Status verified =
          options.signer->Verify(target.job_id, target.part, req.get_param_value("tenant"),
                                 req.get_param_value("expires"), req.get_param_value("sig"), now);
      !verified.ok()) {
    return SetErrorFromStatus(req.path, res, verified);
  }
  absl::StatusOr<JobRecord> record = options.jobs->Get(target.job_id);
  if (!record.ok()) return SetErrorFromStatus(req.path, res, record.status());
  if (record->tenant() != req.get_param_value("tenant")) {
    return SetErrorFromStatus(
        req.path, res,
        absl::PermissionDeniedError("the URL was signed for another tenant than the job's"));
  }
  absl::StatusOr<ExportFile> file = ResolveExportFile(*record, target.part, *options.blobs, now);
  if (!file.ok()) return SetErrorFromStatus(req.path, res, file.status());

  res.set_header("ETag", file->etag);
  res.set_header("Cache-Control", "private");
  res.set_header("Accept-Ranges", "bytes");
  if (NoneMatchMatches(req.get_header_value("If-None-Match"), file->etag)) {
    res.status = 304;
    return;
  }
  res.set_header("Content-Disposition",
                 absl::StrCat("attachment; filename=\"", file->filename, "\""));

  RangeDecision range;
  range.size = file->size_bytes;
  // If-Range (RFC 9110 section 13.1.5) holding anything but the current ETag (another tag,
  // or a date, which this server does not compare) means: send the whole file.
  const bool range_allowed =
      !req.has_header("If-Range") || TrimOws(req.get_header_value("If-Range")) == file->etag;
  if (range_allowed && req.has_header("Range")) {
    range = DecideRange(req.get_header_value("Range"), file->size_bytes);
  }
  switch (range.kind) {
    case RangeDecision::Kind::kUnsatisfiable:
      SetError(res, 416, "range not satisfiable",
               absl::StrCat("the file has ", file->size_bytes, " bytes"));
      res.set_header("Content-Range", range.ContentRange());
      return;
    case RangeDecision::Kind::kPartial:
      // httplib writes Content-Range and Content-Length from this range.
      SetHttplibRanges(req, std::make_pair(range.first, range.last));
      res.status = 206;
      break;
    case RangeDecision::Kind::kWhole:
      res.status = 200;
      break;
  }
  if (file->size_bytes == 0) {
    res.set_content("", file->content_type);
    return;
  }
  auto reader = std::make_shared<PieceReader>(std::move(file->pieces));
  res.set_content_provider(static_cast<size_t>(file->size_bytes), file->content_type,
                           [reader](size_t offset, size_t length, httplib::DataSink& sink) {
                             return reader->Provide(offset, length, sink);
                           });
}

// What a path names.
enum class RouteKind { kNone, kHealthz, kReadyz, kMetrics, kJobList, kJob, kDownload };

bool IsJsonView(RouteKind kind) { return kind == RouteKind::kJobList || kind == RouteKind::kJob; }

RouteKind Classify(const HttpServer::Options& options, std::string_view path) {
  if (path == "/healthz") return RouteKind::kHealthz;
  if (path == "/metrics" && options.metrics) return RouteKind::kMetrics;
  if (path == "/readyz" && options.readiness) return RouteKind::kReadyz;
  const bool json_view = options.get_job && options.list_jobs;
  if (json_view && path == kJobsPrefix.substr(0, kJobsPrefix.size() - 1)) {
    return RouteKind::kJobList;
  }
  if (path.substr(0, kJobsPrefix.size()) == kJobsPrefix) {
    const std::string_view rest = path.substr(kJobsPrefix.size());
    if (json_view && !rest.empty() && rest.find('/') == std::string_view::npos) {
      return RouteKind::kJob;
    }
  }
  if (ParseDownloadPath(path).has_value()) return RouteKind::kDownload;
  return RouteKind::kNone;
}

void SetJson(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body, "application/json");
}

// Answers a JSON view request with `result`, or with the error it holds.
template <typename T, typename Render>
void AnswerJson(const httplib::Request& req, httplib::Response& res,
                const absl::StatusOr<T>& result, Render render) {
  if (result.ok()) return SetJson(res, 200, render(*result));
  if (HttpStatusForCode(result.status().code()) >= 500) {
    // The body leaves the details out; the operator needs them.
    LogEvent(LogLevel::kWarn, "http.error",
             {{"path", req.path}, {"error", result.status().ToString()}});
  }
  SetJson(res, HttpStatusForCode(result.status().code()), ErrorJson(result.status()));
}

void ServeJobList(const HttpServer::Options& options, const std::string& scope,
                  const httplib::Request& req, httplib::Response& res) {
  absl::StatusOr<exportjobs::v1::ListExportJobsResponse> page = [&]() {
    absl::StatusOr<exportjobs::v1::ListExportJobsRequest> request = ParseListParams(req.params);
    if (!request.ok())
      return absl::StatusOr<exportjobs::v1::ListExportJobsResponse>(request.status());
    return options.list_jobs(*request, scope);
  }();
  AnswerJson(req, res, page, ListJobsJson);
}

void ServeJob(const HttpServer::Options& options, const std::string& scope,
              const httplib::Request& req, httplib::Response& res) {
  absl::StatusOr<ExportJob> job = [&]() -> absl::StatusOr<ExportJob> {
    if (absl::Status none = CheckNoParams(req.params); !none.ok()) return none;
    return options.get_job(req.path.substr(kJobsPrefix.size()), scope);
  }();
  AnswerJson(req, res, job, JobJsonText);
}

// The tenant scope of the caller of a JSON view (admin_only false) or /metrics (admin_only
// true) request; nullopt after answering 401 or 403.
std::optional<std::string> Authorize(const HttpServer::Options& options,
                                     const httplib::Request& req, httplib::Response& res,
                                     bool admin_only) {
  if (!options.authorize) return std::string(kAllTenants);
  std::optional<std::string> header;
  if (req.has_header("Authorization")) header = req.get_header_value("Authorization");
  absl::StatusOr<std::string> scope = options.authorize(header, admin_only);
  if (scope.ok()) return *std::move(scope);
  if (absl::IsUnauthenticated(scope.status())) res.set_header("WWW-Authenticate", "Bearer");
  SetJson(res, HttpStatusForCode(scope.status().code()), ErrorJson(scope.status()));
  return std::nullopt;
}

// Serves the request when its path is one of this server's; false otherwise.
bool Route(const HttpServer::Options& options, const httplib::Request& req,
           httplib::Response& res) {
  SetHttplibRanges(req, std::nullopt);
  switch (Classify(options, req.path)) {
    case RouteKind::kHealthz:
      res.status = 200;
      res.set_header("Cache-Control", "no-store");
      res.set_content("ok", "text/plain; charset=utf-8");
      return true;
    case RouteKind::kReadyz: {
      const absl::Status ready = options.readiness();
      res.status = ready.ok() ? 200 : 503;
      res.set_header("Cache-Control", "no-store");
      res.set_content(
          ready.ok() ? std::string("ready") : Cat("not ready: ", std::string(ready.message())),
          "text/plain; charset=utf-8");
      return true;
    }
    case RouteKind::kMetrics:
      if (!Authorize(options, req, res, /*admin_only=*/true)) return true;
      res.status = 200;
      res.set_header("Cache-Control", "no-store");
      res.set_content(options.metrics(), "text/plain; version=0.0.4; charset=utf-8");
      return true;
    case RouteKind::kJobList:
      if (std::optional<std::string> scope = Authorize(options, req, res, false)) {
        ServeJobList(options, *scope, req, res);
      }
      return true;
    case RouteKind::kJob:
      if (std::optional<std::string> scope = Authorize(options, req, res, false)) {
        ServeJob(options, *scope, req, res);
      }
      return true;
    case RouteKind::kDownload:
      ServeDownload(options, *ParseDownloadPath(req.path), req, res);
      return true;
    case RouteKind::kNone:
      break;
  }
  return false;
}

// Every path of this server is read-only: other methods are answered 405 with Allow (404 for
// paths it does not serve), before httplib reads any request body.
httplib::Server::HandlerResponse RefuseMethod(const HttpServer::Options& options,
                                              const httplib::Request& req, httplib::Response& res) {
  if (req.method == "GET" || req.method == "HEAD") {
    return httplib::Server::HandlerResponse::Unhandled;
  }
  // The body is not read: the connection cannot carry another request.
  res.set_header("Connection", "close");
  const RouteKind kind = Classify(options, req.path);
  if (kind == RouteKind::kNone) {
    SetError(res, 404, "not found", "no such resource");
    return httplib::Server::HandlerResponse::Handled;
  }
  res.set_header("Allow", "GET, HEAD");
  const std::string message = Cat(req.method, " is not allowed here; use GET or HEAD");
  if (IsJsonView(kind)) {
    SetJson(res, 405, ErrorJson(405, "METHOD_NOT_ALLOWED", message));
  } else {
    SetError(res, 405, "method not allowed", message);
  }
  return httplib::Server::HandlerResponse::Handled;
}

// "HOST:PORT" -> the host as written, the host to bind (IPv6 without brackets), the port.
struct ParsedAddress {
  std::string host;
  std::string bind_host;
  int port = 0;
};

absl::StatusOr<ParsedAddress> ParseAddress(const std::string& address) {
  const auto invalid = [&address]() {
    return absl::InvalidArgumentError(
        absl::StrCat("address: \"", address.substr(0, 200), "\" is not HOST:PORT"));
  };
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return invalid();
  ParsedAddress parsed;
  parsed.host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      !absl::SimpleAtoi(port, &parsed.port) || parsed.port > 65535) {
    return invalid();
  }
  parsed.bind_host = parsed.host;
  if (parsed.host.front() == '[') {
    if (parsed.host.size() < 3 || parsed.host.back() != ']') return invalid();
    parsed.bind_host = parsed.host.substr(1, parsed.host.size() - 2);
  } else if (parsed.host.find(':') != std::string::npos) {
    return invalid();  // IPv6 needs brackets.
  }
  return parsed;
}

}  // namespace

HttpServer::HttpServer(Options options, std::string host)
    : options_(std::move(options)),
      host_(std::move(host)),
      server_(std::make_unique<httplib::Server>()) {}

HttpServer::~HttpServer() { Stop(); }

std::string HttpServer::address() const { return absl::StrCat(host_, ":", port_); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const Options& options) {
  if (options.jobs == nullptr || options.blobs == nullptr || options.signer == nullptr ||
      options.clock == nullptr) {
    return absl::InvalidArgumentError("http server: jobs, blobs, signer and clock must be set");
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError("http server: threads must be at least 1");
  }
  absl::StatusOr<ParsedAddress> address = ParseAddress(options.address);
  if (!address.ok()) return address.status();

  std::unique_ptr<HttpServer> http(new HttpServer(options, address->host));
  httplib::Server& server = *http->server_;
  const Options* served = &http->options_;
  const size_t threads = static_cast<size_t>(options.threads);
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.set_read_timeout(kReadTimeoutSeconds);
  server.set_write_timeout(kWriteTimeoutSeconds);
  server.set_keep_alive_timeout(kKeepAliveTimeoutSeconds);
  server.set_payload_max_length(kMaxRequestBodyBytes);
  // Headers and body go out in separate writes; without this, Nagle's algorithm and the
  // client's delayed ACK hold small responses back for tens of milliseconds.
  server.set_tcp_nodelay(true);
  // httplib's default also sets SO_REUSEPORT, which would let a second server bind the same
  // port without an error; SO_REUSEADDR alone allows quick restarts and nothing more.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  // HEAD requests are routed to the GET handlers; httplib sends no body for them.
  const auto handler = [served](const httplib::Request& req, httplib::Response& res) {
    if (!Route(*served, req, res)) {
      SetError(res, 404, "not found", "no such resource");
    }
  };
  server.Get("/healthz", handler);
  server.Get("/metrics", handler);
  server.Get("/readyz", handler);
  server.Get(R"(/v1/export-jobs/[^/]+/(file|parts/[^/]+))", handler);
  server.Get("/v1/export-jobs", handler);
  server.Get(R"(/v1/export-jobs/[^/]+)", handler);
  server.set_pre_routing_handler([served](const httplib::Request& req, httplib::Response& res) {
    return RefuseMethod(*served, req, res);
  });
  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [served](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        SetHttplibRanges(req, std::nullopt);
        if (res.status == 416 && !res.has_header("Content-Range")) {
          // httplib refused the Range header before routing (it does so for values it cannot
          // parse and for last < first). Route the request after all: DecideRange ignores
          // what it cannot parse (RFC 9110 allows that) and refuses what is unsatisfiable.
          if (Route(*served, req, res)) {
            return httplib::Server::HandlerResponse::Handled;
          }
          res.status = 404;
        }
        // httplib's own errors (no route, bad request line, ...) get a body too.
        if (res.status == 404) {
          SetError(res, 404, "not found", "no such resource");
        } else {
          SetError(res, res.status, "error", absl::StrCat("HTTP status ", res.status));
        }
        return httplib::Server::HandlerResponse::Handled;
      }));

  int port = address->port;
  if (port == 0) {
    port = server.bind_to_any_port(address->bind_host);
    if (port < 0) {
      return absl::UnavailableError(absl::StrCat("http server: cannot bind ", options.address));
    }
  } else if (!server.bind_to_port(address->bind_host, port)) {
    return absl::UnavailableError(absl::StrCat("http server: cannot bind ", options.address));
  }
  http->port_ = port;

  auto listen_returned = std::make_shared<std::atomic<bool>>(false);
  {
    std::lock_guard<std::mutex> lock(http->stop_mu_);
    http->listener_ = std::thread([&server, listen_returned] {
      server.listen_after_bind();
      listen_returned->store(true);
    });
  }
  // httplib's stop() has no effect until listen_after_bind() has marked the server running, so
  // Start returns only once it has (a few microseconds).
  while (!server.is_running() && !listen_returned->load()) std::this_thread::yield();
  if (!server.is_running()) {
    http->Stop();
    return absl::UnavailableError(absl::StrCat("http server: cannot listen on ", options.address));
  }
  return http;
}

void HttpServer::Stop() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  if (listener_.joinable()) {
    server_->stop();
    listener_.join();
  }
}

}  // namespace exportd
