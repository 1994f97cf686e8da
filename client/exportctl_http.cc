#include "client/exportctl_http.h"

#include <httplib.h>

#include "absl/strings/numbers.h"
#include "client/exportctl_exit.h"
#include "common/str_cat.h"

namespace exportd::exportctl {

absl::StatusOr<HttpUrl> SplitHttpUrl(std::string_view url) {
  size_t scheme_end = std::string_view::npos;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (url.substr(0, scheme.size()) == scheme) scheme_end = scheme.size();
  }
  if (scheme_end == std::string_view::npos) {
    return absl::InvalidArgumentError(
        Cat("download URL \"", url.substr(0, 200), "\" is not an http:// or https:// URL"));
  }
  const size_t path = url.find('/', scheme_end);
  HttpUrl out;
  out.scheme_host_port = std::string(url.substr(0, path));
  out.path_and_query = path == std::string_view::npos ? "/" : std::string(url.substr(path));
  if (out.scheme_host_port.size() == scheme_end) {
    return absl::InvalidArgumentError(Cat("download URL \"", url.substr(0, 200), "\" has no host"));
  }
  return out;
}

absl::Status HttpGet(const HttpGetRequest& request,
                     const std::function<absl::Status(const HttpResponseHead&)>& on_head,
                     const std::function<absl::Status(std::string_view)>& on_body) {
  absl::StatusOr<HttpUrl> url = SplitHttpUrl(request.url);
  if (!url.ok()) return url.status();
  httplib::Client client(url->scheme_host_port);
  if (!client.is_valid()) {
    return absl::InvalidArgumentError(
        Cat("cannot make an HTTP client for ", url->scheme_host_port));
  }
  const auto seconds = absl::ToInt64Seconds(request.timeout);
  const auto micros = absl::ToInt64Microseconds(request.timeout) % 1'000'000;
  client.set_connection_timeout(seconds, micros);
  client.set_read_timeout(seconds, micros);
  client.set_decompress(false);
  client.set_keep_alive(false);

  httplib::Headers headers;
  for (const auto& [name, value] : request.headers) headers.emplace(name, value);

  absl::Status callback_error;
  int64_t received = 0;
  httplib::Result result = client.Get(
      url->path_and_query, headers,
      [&](const httplib::Response& response) {
        HttpResponseHead head;
        head.status = response.status;
        head.etag = response.get_header_value("ETag");
        head.content_range = response.get_header_value("Content-Range");
        if (response.has_header("Content-Length")) {
          int64_t length = 0;
          if (absl::SimpleAtoi(response.get_header_value("Content-Length"), &length)) {
            head.content_length = length;
          }
        }
        callback_error = on_head(head);
        return callback_error.ok();
      },
      [&](const char* data, size_t size) {
        received += static_cast<int64_t>(size);
        callback_error = on_body(std::string_view(data, size));
        return callback_error.ok();
      });
  if (!callback_error.ok()) return callback_error;
  if (!result) {
    return WithExitCode(
        absl::UnavailableError(
            Cat("GET ", url->scheme_host_port, ": ", httplib::to_string(result.error()),
                received > 0 ? Cat(" after ", received, " bytes of the body") : std::string())),
        kExitHttp);
  }
  return absl::OkStatus();
}

}  // namespace exportd::exportctl
