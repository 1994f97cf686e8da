// Tenant scopes: which tenants' jobs a caller may see and act on.
//
// A scope is one tenant's name, or kAllTenants for a caller that may act on every tenant's jobs
// (an admin). Jobs are created in a tenant, never in kAllTenants.
//
// Thread safety: plain functions of their arguments.
#pragma once

#include <string_view>

namespace exportd {

// The scope of every tenant. No tenant is named so: tenant names never hold '*'.
inline constexpr std::string_view kAllTenants = "*";

// True when a caller whose scope is `scope` may see a job of `tenant`.
inline bool InTenantScope(std::string_view scope, std::string_view tenant) {
  return scope == kAllTenants || scope == tenant;
}

}  // namespace exportd
