// Authentication and authorization of export-server callers.
//
// Every gRPC call carries `authorization: Bearer <token>` metadata and every HTTP request of the
// JSON view and /metrics an `Authorization: Bearer <token>` header. A tokens file maps each token
// to a principal, a tenant and a role:
//
//   # <token> <principal> <tenant> <role>
//   3f9c0e...(at least 16 characters)  reporting-ui  acme  client
//   b71d42...                          worker-1      ops   worker
//
// one entry per line, fields separated by blanks; `#` starts a comment line; blank lines are
// skipped. Tokens are at least kMinTokenLength characters of printable ASCII; tenants 1-64 of
// [A-Za-z0-9._-]; roles client, worker or admin. A duplicate token is an error.
//
// Roles:
//   client  ExportService, on the jobs of its own tenant only.
//   worker  WorkerService (and ExportService.ListExportableFields).
//   admin   everything, on the jobs of every tenant; jobs it creates belong to its own tenant.
//
// Tokens are looked up by their SHA-256, so no comparison runs over the secret itself.
//
// With --insecure_no_auth (Authenticator::Insecure) there is no token check: every caller is
// the admin-equivalent principal "insecure" of tenant "".
//
// Thread safety: TokenTable is immutable. Authenticator is thread-safe; Reload may run while
// other threads authenticate, which see the old table or the new one, never a mix.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/tenancy.h"

namespace grpc {
class CallbackServerContext;
}  // namespace grpc

namespace exportd {

inline constexpr size_t kMinTokenLength = 16;

enum class Role { kClient, kWorker, kAdmin };

// "client", "worker", "admin".
std::string_view RoleName(Role role);

struct Principal {
  std::string name;
  std::string tenant;
  Role role = Role::kClient;

  // The jobs this principal may see: kAllTenants for an admin, else its tenant.
  std::string scope() const { return role == Role::kAdmin ? std::string(kAllTenants) : tenant; }
};

// What a call needs.
enum class Access {
  kJobs,       // ExportService job calls and the JSON view: client or admin.
  kWorker,     // WorkerService: worker or admin.
  kAnyRole,    // e.g. ListExportableFields: any authenticated caller.
  kAdminOnly,  // e.g. /metrics.
};

// OK when `principal` may make a call that needs `access`; otherwise PERMISSION_DENIED naming
// the role and `method` (e.g. "exportjobs.v1.WorkerService/ClaimExportJob").
absl::Status Authorize(const Principal& principal, Access access, std::string_view method);

// True for a valid tenant name (1-64 of [A-Za-z0-9._-]).
bool IsValidTenant(std::string_view tenant);

class TokenTable {
 public:
  // Parses the tokens file text. INVALID_ARGUMENT "line N: <reason>" for the first bad line:
  // a wrong number of fields, a short token, a duplicate token, a bad tenant or an unknown role.
  static absl::StatusOr<TokenTable> Parse(std::string_view text);
  // Reads and parses `path`; errors name the file (UNAVAILABLE when it cannot be read).
  static absl::StatusOr<TokenTable> Load(const std::string& path);

  // The principal of `token`; nullptr when there is none.
  const Principal* Find(std::string_view token) const;
  size_t size() const { return by_hash_.size(); }

 private:
  // SHA-256 of the token (raw bytes) -> its principal.
  std::unordered_map<std::string, Principal> by_hash_;
};

class Authenticator {
 public:
  // Every caller is the admin-equivalent principal "insecure" of tenant "".
  static std::unique_ptr<Authenticator> Insecure();
  // Loads `tokens_file`; its errors (see TokenTable::Load) when it is unusable.
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromFile(std::string tokens_file);
  // A fixed table (tests).
  static std::unique_ptr<Authenticator> FromTable(TokenTable table);

  bool insecure() const { return insecure_; }
  const std::string& tokens_file() const { return tokens_file_; }

  // Reads the tokens file again and swaps the new table in atomically. On error the old table
  // stays and the error is returned. FAILED_PRECONDITION without a tokens file.
  absl::Status Reload();

  // Number of tokens in the table now.
  size_t token_count() const;

  // The principal of an Authorization header value ("Bearer <token>"); nullopt when the
  // header is absent. UNAUTHENTICATED for a missing, malformed or unknown token.
  absl::StatusOr<Principal> Authenticate(std::optional<std::string_view> authorization) const;

  // Authenticate with the `authorization` metadata of a gRPC call, then Authorize.
  absl::StatusOr<Principal> Check(const grpc::CallbackServerContext* context, Access access,
                                  std::string_view method) const;

 private:
  Authenticator(bool insecure, std::string tokens_file, std::shared_ptr<const TokenTable> table);

  const bool insecure_;
  const std::string tokens_file_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const TokenTable> table_ ABSL_GUARDED_BY(mu_);
};

}  // namespace exportd
