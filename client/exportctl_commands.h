// exportctl's commands: each runs one Invocation against an ExportClient, prints its result to
// `out` and its errors and notes to `err`, and returns the process's exit code
// (exportctl_exit.h).
//
// Output forms (Invocation::output):
//   table: human-friendly text (exportctl_format.h); watch draws its live progress line only
//          when `out` is a terminal, and prints one plain line per change otherwise.
//   json:  jobs exactly in the ExportJob JSON form (common/job_json.h): get, cancel and create
//          print one object; list one {"export_jobs":[...],"next_page_token":...} object; watch
//          and create --wait one job object per event, one per line; wait the final job.
//
// Thread safety: RunCommand runs on the calling thread; only `cancel` may be used from another
// thread (a signal handler's thread cancels a running command with it).
#pragma once

#include <functional>
#include <ostream>

#include "client/export_client.h"
#include "client/exportctl_cli.h"

namespace exportd::exportctl {

struct Terminal {
  bool stdout_is_tty = false;
  bool stderr_is_tty = false;
  // Columns of the terminal, for the live lines.
  int width = 80;
};

struct Runtime {
  client::ExportClient* client = nullptr;
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;
  Terminal terminal;
  // Cancels the running call; may be null.
  client::CancelToken* cancel = nullptr;
  // The clock of progress displays.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

// Runs `invocation` and returns the exit code; errors are printed to runtime.err as
// "exportctl: <CODE NAME>: <message>".
int RunCommand(const Invocation& invocation, Runtime& runtime);

}  // namespace exportd::exportctl
