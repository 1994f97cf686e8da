// Test helpers for the HTTP port: one request with httplib::Client, its answer flattened, and
// waiting for a callback's result.
#pragma once

#include <httplib.h>

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/notification.h"

namespace exportd::testing {

// One HTTP response, flattened.
struct Reply {
  int status = -1;  // -1: no response (the error says why).
  std::string error;
  std::string body;
  httplib::Headers headers;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  size_t HeaderCount(const std::string& name) const { return headers.count(name); }
};

// Sends `method` `path` (with `body` for methods that carry one) to the server at "HOST:PORT".
inline Reply Fetch(const std::string& address, const std::string& method, const std::string& path,
                   const std::string& body = "") {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    Reply bad;
    bad.error = "not HOST:PORT: " + address;
    return bad;
  }
  httplib::Client client(address.substr(0, colon), port);
  client.set_connection_timeout(5);
  client.set_read_timeout(20);
  client.set_write_timeout(5);
  httplib::Result result = [&] {
    if (method == "GET") return client.Get(path.c_str());
    if (method == "HEAD") return client.Head(path.c_str());
    if (method == "POST") return client.Post(path.c_str(), body, "application/json");
    if (method == "PUT") return client.Put(path.c_str(), body, "application/json");
    if (method == "PATCH") return client.Patch(path.c_str(), body, "application/json");
    if (method == "DELETE") return client.Delete(path.c_str());
    return client.Options(path.c_str());
  }();
  Reply reply;
  if (!result) {
    reply.error = httplib::to_string(result.error());
    return reply;
  }
  reply.status = result->status;
  reply.body = result->body;
  reply.headers = result->headers;
  return reply;
}

inline Reply HttpGet(const std::string& address, const std::string& path) {
  return Fetch(address, "GET", path);
}

// Starts an asynchronous call whose callback takes an absl::StatusOr<T> and waits for it.
template <typename T, typename Start>
absl::StatusOr<T> AwaitCall(Start start) {
  absl::Notification done;
  absl::StatusOr<T> result = absl::UnknownError("no answer");
  start([&](absl::StatusOr<T> r) {
    result = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

}  // namespace exportd::testing
