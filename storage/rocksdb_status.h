// The one mapping from rocksdb::Status to absl::Status. Private to storage/.
//
// Thread safety: a pure function.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/status.h"

namespace exportd {

// OK for OK; otherwise a status whose message is `context` (when not empty), ": " and RocksDB's
// own description, with the code:
//   UNAVAILABLE       I/O errors (including no space and a database locked by another opener),
//                     busy, timed out, try again, shutdown in progress: retrying may succeed;
//   DATA_LOSS         corruption;
//   NOT_FOUND         not found;
//   INVALID_ARGUMENT  invalid argument;
//   INTERNAL          anything else.
absl::Status FromRocksDbStatus(const rocksdb::Status& status, absl::string_view context = {});

}  // namespace exportd
