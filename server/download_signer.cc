#include "server/download_signer.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <string_view>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace exportd {
namespace {

constexpr size_t kMinKeyBytes = 32;
constexpr size_t kNewKeyBytes = 32;
// A key file larger than this is not a key file.
constexpr size_t kMaxKeyFileBytes = 64 << 10;
// Hex of an HMAC-SHA256.
constexpr size_t kSignatureHexLength = 64;

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// host[:port] of a public URL: a DNS name or IPv4 address, or a bracketed IPv6 address,
// optionally followed by a port 1-65535.
bool IsHostAndPort(std::string_view authority) {
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (char c : authority.substr(1, close - 1)) {
      if (!(absl::ascii_isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) {
        return false;
      }
    }
    host = authority.substr(0, close + 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return false;
      port = after.substr(1);
      if (port.empty()) return false;
    }
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      if (port.empty()) return false;
    }
    if (host.empty()) return false;
    for (char c : host) {
      if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-')) {
        return false;
      }
    }
  }
  if (!port.empty()) {
    if (!IsDigits(port) || port.size() > 5) return false;
    int value = 0;
    if (!absl::SimpleAtoi(absl::string_view(port.data(), port.size()), &value)) return false;
    if (value < 1 || value > 65535) return false;
  }
  return true;
}

bool IsPublicUrl(std::string_view url) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (url.substr(0, scheme.size()) == scheme) return IsHostAndPort(url.substr(scheme.size()));
  }
  return false;
}

// Percent-encodes everything but RFC 3986 unreserved characters, so that any job id makes a
// well-formed path segment (well-formed job ids are hex and come out unchanged).
std::string EscapePathSegment(std::string_view segment) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(segment.size());
  for (char c : segment) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    }
  }
  return out;
}

absl::Status IoError(const std::string& what, const std::string& path, int error) {
  return absl::UnavailableError(
      absl::StrCat("signing key: ", what, " ", path, ": ", std::strerror(error)));
}

// Reads the whole key file. NOT_FOUND when it does not exist.
absl::StatusOr<std::string> ReadKeyFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(path);
    return IoError("open", path, errno);
  }
  std::string key;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return IoError("read", path, error);
    }
    if (n == 0) break;
    key.append(buffer, static_cast<size_t>(n));
    if (key.size() > kMaxKeyFileBytes) {
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("signing key file ", path, " holds more than ", kMaxKeyFileBytes, " bytes"));
    }
  }
  ::close(fd);
  if (key.size() < kMinKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("signing key file ", path, " holds ", key.size(),
                                                   " bytes; at least ", kMinKeyBytes,
                                                   " are needed"));
  }
  return key;
}

absl::Status WriteAll(int fd, const unsigned char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "write");
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Writes a new key to a temporary file (O_EXCL, 0600), fsyncs it, and links it to `path`,
// which fails with EEXIST when another process created the key first; so the key file,
// once it exists, is always complete. OK also when another process won the race.
absl::Status CreateKeyFile(const std::string& path) {
  unsigned char key[kNewKeyBytes];
  if (RAND_bytes(key, sizeof(key)) != 1) {
    return absl::UnavailableError("signing key: RAND_bytes failed");
  }
  thread_local std::mt19937_64 random(std::random_device{}());
  const std::string temp = absl::StrCat(path, ".tmp-", absl::Hex(random()));
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return IoError("create", temp, errno);
  absl::Status written = WriteAll(fd, key, sizeof(key));
  OPENSSL_cleanse(key, sizeof(key));
  if (written.ok() && ::fsync(fd) != 0) written = absl::ErrnoToStatus(errno, "fsync");
  if (::close(fd) != 0 && written.ok()) written = absl::ErrnoToStatus(errno, "close");
  if (!written.ok()) {
    ::unlink(temp.c_str());
    return absl::UnavailableError(absl::StrCat("signing key: ", temp, ": ", written.message()));
  }
  const int linked = ::link(temp.c_str(), path.c_str());
  const int link_error = errno;
  ::unlink(temp.c_str());
  if (linked != 0 && link_error != EEXIST) return IoError("link", path, link_error);
  // Make the new directory entry durable.
  const std::string dir = DirName(path);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return IoError("open", dir, errno);
  const int synced = ::fsync(dir_fd);
  const int sync_error = errno;
  ::close(dir_fd);
  if (synced != 0) return IoError("fsync", dir, sync_error);
  return absl::OkStatus();
}

}  // namespace

DownloadSigner::DownloadSigner(std::string key, std::string public_url)
    : key_(std::move(key)), public_url_(std::move(public_url)) {}

absl::StatusOr<std::unique_ptr<DownloadSigner>> DownloadSigner::Create(std::string key,
                                                                       std::string public_url) {
  if (key.size() < kMinKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("signing key: ", key.size(), " bytes; at least ",
                                                   kMinKeyBytes, " are needed"));
  }
  if (!IsPublicUrl(public_url)) {
    return absl::InvalidArgumentError(
        absl::StrCat("public_url: \"", public_url.substr(0, 200),
                     "\" is not http(s)://host[:port] (no path, no trailing slash)"));
  }
  return std::unique_ptr<DownloadSigner>(new DownloadSigner(std::move(key), std::move(public_url)));
}

std::string DownloadSigner::Url(const std::string& job_id, const std::string& tenant, int32_t part,
                                absl::Time expires) const {
  const int64_t expires_seconds = absl::ToUnixSeconds(expires);
  const std::string resource = part == 0 ? "file" : absl::StrCat("parts/", part);
  return absl::StrCat(public_url_, "/v1/export-jobs/", EscapePathSegment(job_id), "/", resource,
                      "?tenant=", EscapePathSegment(tenant), "&expires=", expires_seconds,
                      "&sig=", Sign(job_id, tenant, part, expires_seconds));
}

absl::Status DownloadSigner::Verify(const std::string& job_id, int32_t part,
                                    const std::string& tenant, const std::string& expires,
                                    const std::string& sig, absl::Time now) const {
  if (expires.empty()) return absl::PermissionDeniedError("the URL has no expires value");
  if (sig.empty()) return absl::PermissionDeniedError("the URL has no sig value");
  int64_t expires_seconds = 0;
  // Digits only (no sign, no spaces), and within int64.
  if (!IsDigits(expires) ||
      !absl::SimpleAtoi(absl::string_view(expires.data(), expires.size()), &expires_seconds)) {
    return absl::PermissionDeniedError("the URL's expires value is malformed");
  }
  if (sig.size() != kSignatureHexLength || !IsLowerHex(sig)) {
    return absl::PermissionDeniedError("the URL's sig value is malformed");
  }
  const std::string expected = Sign(job_id, tenant, part, expires_seconds);
  if (CRYPTO_memcmp(expected.data(), sig.data(), kSignatureHexLength) != 0) {
    return absl::PermissionDeniedError("the URL's signature does not match");
  }
  // Only a URL we signed learns that it has expired.
  if (now >= absl::FromUnixSeconds(expires_seconds)) {
    return absl::DeadlineExceededError("the URL has expired");
  }
  return absl::OkStatus();
}

std::string DownloadSigner::Sign(const std::string& job_id, const std::string& tenant, int32_t part,
                                 int64_t expires) const {
  // The job id and the tenant are length-prefixed and the integers cannot hold a newline, so no
  // two (job id, tenant, part, expires) have the same message.
  const std::string message =
      absl::StrCat("exportd-download-v2\n", job_id.size(), ":", job_id, "\n", tenant.size(), ":",
                   tenant, "\n", part, "\n", expires);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &mac_size);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(mac), static_cast<size_t>(mac_size)));
}

absl::StatusOr<std::string> LoadOrCreateSigningKey(const std::string& path) {
  if (path.empty()) return absl::UnavailableError("signing key: no file name given");
  absl::StatusOr<std::string> key = ReadKeyFile(path);
  if (!absl::IsNotFound(key.status())) return key;
  if (absl::Status created = CreateKeyFile(path); !created.ok()) return created;
  key = ReadKeyFile(path);
  if (absl::IsNotFound(key.status())) {
    return absl::UnavailableError(
        absl::StrCat("signing key: ", path, " vanished right after it was created"));
  }
  return key;
}

}  // namespace exportd
