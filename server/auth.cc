#include "server/auth.h"

#include <openssl/sha.h>

#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/str_cat.h"
#include "grpcpp/grpcpp.h"

namespace exportd {
namespace {

constexpr size_t kMaxTenantLength = 64;
constexpr size_t kMaxTokenLength = 4096;
// A tokens file larger than this is a mistake (a wrong path).
constexpr std::streamsize kMaxTokensFileBytes = 16 << 20;

std::string Sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

std::optional<Role> ParseRole(std::string_view name) {
  if (name == "client") return Role::kClient;
  if (name == "worker") return Role::kWorker;
  if (name == "admin") return Role::kAdmin;
  return std::nullopt;
}

bool IsTokenChar(char c) { return c > ' ' && c < 0x7f; }

absl::Status LineError(int line, std::string_view reason) {
  return absl::InvalidArgumentError(Cat("line ", line, ": ", reason));
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kClient:
      return "client";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
  }
  return "unknown";
}

bool IsValidTenant(std::string_view tenant) {
  if (tenant.empty() || tenant.size() > kMaxTenantLength) return false;
  for (char c : tenant) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

absl::Status Authorize(const Principal& principal, Access access, std::string_view method) {
  bool allowed = false;
  switch (access) {
    case Access::kJobs:
      allowed = principal.role == Role::kClient || principal.role == Role::kAdmin;
      break;
    case Access::kWorker:
      allowed = principal.role == Role::kWorker || principal.role == Role::kAdmin;
      break;
    case Access::kAnyRole:
      allowed = true;
      break;
    case Access::kAdminOnly:
      allowed = principal.role == Role::kAdmin;
      break;
  }
  if (allowed) return absl::OkStatus();
  return absl::PermissionDeniedError(Cat("role ", RoleName(principal.role), " (principal ",
                                         principal.name, ") may not call ", method));
}

absl::StatusOr<TokenTable> TokenTable::Parse(std::string_view text) {
  TokenTable table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_number;
    const absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty() || trimmed.front() == '#') continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(trimmed, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.size() != 4) {
      return LineError(
          line_number,
          Cat("expected 4 fields `<token> <principal> <tenant> <role>`, got ", fields.size()));
    }
    const std::string_view token(fields[0].data(), fields[0].size());
    if (token.size() < kMinTokenLength) {
      return LineError(line_number, Cat("token: ", token.size(), " characters; at least ",
                                        kMinTokenLength, " are needed"));
    }
    if (token.size() > kMaxTokenLength) {
      return LineError(line_number, Cat("token: longer than ", kMaxTokenLength, " characters"));
    }
    for (char c : token) {
      if (!IsTokenChar(c)) return LineError(line_number, "token: must be printable ASCII");
    }
    Principal principal;
    principal.name = std::string(fields[1]);
    principal.tenant = std::string(fields[2]);
    if (!IsValidTenant(principal.tenant)) {
      return LineError(line_number, Cat("tenant: \"", principal.tenant,
                                        "\" is not 1-64 characters of [A-Za-z0-9._-]"));
    }
    const std::optional<Role> role =
        ParseRole(std::string_view(fields[3].data(), fields[3].size()));
    if (!role) {
      return LineError(line_number, Cat("role: \"", std::string(fields[3]),
                                        "\" is not one of client, worker, admin"));
    }
    principal.role = *role;
    // The token itself is never named in a message.
    if (!table.by_hash_.emplace(Sha256(token), std::move(principal)).second) {
      return LineError(line_number, "token: duplicate of an earlier line's token");
    }
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::UnavailableError(Cat("tokens_file: cannot read \"", path, "\""));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::UnavailableError(Cat("tokens_file: error reading \"", path, "\""));
  if (text.tellp() > kMaxTokensFileBytes) {
    return absl::InvalidArgumentError(Cat("tokens_file: \"", path, "\" is larger than 16 MiB"));
  }
  absl::StatusOr<TokenTable> table = Parse(text.str());
  if (!table.ok()) {
    return absl::InvalidArgumentError(
        Cat("tokens_file \"", path, "\": ", std::string(table.status().message())));
  }
  return table;
}

const Principal* TokenTable::Find(std::string_view token) const {
  auto it = by_hash_.find(Sha256(token));
  return it == by_hash_.end() ? nullptr : &it->second;
}

Authenticator::Authenticator(bool insecure, std::string tokens_file,
                             std::shared_ptr<const TokenTable> table)
    : insecure_(insecure), tokens_file_(std::move(tokens_file)), table_(std::move(table)) {}

std::unique_ptr<Authenticator> Authenticator::Insecure() {
  return std::unique_ptr<Authenticator>(new Authenticator(true, "", nullptr));
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromFile(std::string tokens_file) {
  absl::StatusOr<TokenTable> table = TokenTable::Load(tokens_file);
  if (!table.ok()) return table.status();
  return std::unique_ptr<Authenticator>(new Authenticator(
      false, std::move(tokens_file), std::make_shared<const TokenTable>(*std::move(table))));
}

std::unique_ptr<Authenticator> Authenticator::FromTable(TokenTable table) {
  return std::unique_ptr<Authenticator>(
      new Authenticator(false, "", std::make_shared<const TokenTable>(std::move(table))));
}

absl::Status Authenticator::Reload() {
  if (tokens_file_.empty()) {
    return absl::FailedPreconditionError("tokens_file: none was given; nothing to reload");
  }
  // Read and parse outside the lock; only the swap holds it.
  absl::StatusOr<TokenTable> table = TokenTable::Load(tokens_file_);
  if (!table.ok()) return table.status();
  auto fresh = std::make_shared<const TokenTable>(*std::move(table));
  absl::MutexLock lock(&mu_);
  table_ = std::move(fresh);
  return absl::OkStatus();
}

size_t Authenticator::token_count() const {
  absl::ReaderMutexLock lock(&mu_);
  return table_ ? table_->size() : 0;
}

absl::StatusOr<Principal> Authenticator::Authenticate(
    std::optional<std::string_view> authorization) const {
  if (insecure_) return Principal{"insecure", "", Role::kAdmin};
  if (!authorization) {
    return absl::UnauthenticatedError(
        "authorization: missing; send the header `authorization: Bearer <token>`");
  }
  constexpr std::string_view kScheme = "Bearer ";
  std::string_view value = *authorization;
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(absl::string_view(value.data(), kScheme.size()),
                              absl::string_view(kScheme.data(), kScheme.size()))) {
    return absl::UnauthenticatedError("authorization: malformed; expected `Bearer <token>`");
  }
  value.remove_prefix(kScheme.size());
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (value.empty()) {
    return absl::UnauthenticatedError("authorization: malformed; expected `Bearer <token>`");
  }
  std::shared_ptr<const TokenTable> table;
  {
    absl::ReaderMutexLock lock(&mu_);
    table = table_;
  }
  const Principal* principal = table ? table->Find(value) : nullptr;
  if (principal == nullptr) return absl::UnauthenticatedError("authorization: unknown token");
  return *principal;
}

absl::StatusOr<Principal> Authenticator::Check(const grpc::CallbackServerContext* context,
                                               Access access, std::string_view method) const {
  std::optional<std::string_view> header;
  if (!insecure_) {
    const auto& metadata = context->client_metadata();
    auto it = metadata.find("authorization");
    if (it != metadata.end()) header = std::string_view(it->second.data(), it->second.size());
  }
  absl::StatusOr<Principal> principal = Authenticate(header);
  if (!principal.ok()) return principal.status();
  if (absl::Status allowed = Authorize(*principal, access, method); !allowed.ok()) return allowed;
  return principal;
}

}  // namespace exportd
