// Source: where an export's records come from. Rows are projected to the requested fields (in
// their order) and filtered by the job's condition, in ascending id order.
//
// Thread safety: an implementation may be used by one thread at a time; open one per job.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/catalog.h"
#include "common/filters.h"
#include "worker/row.h"

namespace exportd {

class Source {
 public:
  virtual ~Source() = default;

  // Calls `row` for every matching record; stops early, returning OK, when `row` returns false.
  // Errors: INVALID_ARGUMENT for a field not in the catalog; UNAVAILABLE when the source cannot
  // be read.
  [[nodiscard]] virtual absl::Status Scan(const catalog::Entity& entity,
                                          const std::vector<std::string>& fields,
                                          const filters::Condition& condition,
                                          const std::function<bool(const Row&)>& row) = 0;

  // How many records match (for progress estimates).
  virtual absl::StatusOr<int64_t> Count(const catalog::Entity& entity,
                                        const filters::Condition& condition) = 0;
};

}  // namespace exportd
