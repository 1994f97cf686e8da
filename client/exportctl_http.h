// One HTTP GET with cpp-httplib, streamed: the response's headers, then its body piece by piece,
// to callbacks that may stop the transfer.
//
// Thread safety: HttpGet may run on several threads at once (each call has its own client).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace exportd::exportctl {

struct HttpUrl {
  std::string scheme_host_port;  // "http://127.0.0.1:8080"
  std::string path_and_query;    // "/v1/export-jobs/ID/file?expires=...&sig=..."
};
// Splits an absolute http or https URL. INVALID_ARGUMENT for anything else.
absl::StatusOr<HttpUrl> SplitHttpUrl(std::string_view url);

struct HttpGetRequest {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  // The limit on connecting and on each wait for more bytes.
  absl::Duration timeout = absl::Seconds(30);
};

struct HttpResponseHead {
  int status = 0;
  std::string etag;           // "" when absent
  std::string content_range;  // "" when absent
  int64_t content_length = -1;
};

// GETs request.url: calls on_head once the status line and headers arrived, then on_body with
// each piece of the body in order (for every status; a caller that does not want an error
// page's body can keep it for its message). A content encoding is never undone: the bytes are
// what the server sent. Returns OK when the whole body arrived; the first error of on_head or
// on_body, which stops the transfer; INVALID_ARGUMENT for a bad URL; UNAVAILABLE (exit code
// kExitHttp) when the connection could not be made or broke.
absl::Status HttpGet(const HttpGetRequest& request,
                     const std::function<absl::Status(const HttpResponseHead&)>& on_head,
                     const std::function<absl::Status(std::string_view)>& on_body);

}  // namespace exportd::exportctl
