// Configuration of a binary from its command line, the environment and a config file.
//
// Every absl flag of the binary (all but absl's own, such as --flagfile) can be set
//   1. on the command line:   --data_dir=/var/lib/exportd
//   2. in the environment:    EXPORTD_DATA_DIR=/var/lib/exportd   (EXPORTD_ + the name in capitals)
//   3. in a config file named by --config=FILE (or EXPORTD_CONFIG=FILE), one flag per line:
//        # comment
//        data_dir = /var/lib/exportd
//        lease_duration = 45s
//      `name = value`, with blanks around either trimmed; a value is the rest of the line as is
//      (no quotes, no comments after it); blank lines and lines starting with # are skipped.
// and the first of these that sets a flag wins: command line over environment over config file
// over the flag's default. An empty environment variable counts as unset.
//
// Values are parsed by the flag itself (absl::CommandLineFlag::ParseFrom), so they take the
// same syntax as on the command line. A line that is not `name = value`, a name the binary has
// no flag for (or `config` itself), a flag set twice in the file, a value the flag cannot parse
// (in the file or the environment) and a file that cannot be read are errors naming the file,
// the line and the flag (or the variable).
//
// Thread safety: for main(), before any other thread runs.
#pragma once

#include <string_view>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"

namespace exportd {

// Sets the --help text (`description`, then the rule above; --help lists every flag of the
// project with its default), applies the config file and the environment, then parses the
// command line with absl::ParseCommandLine (which prints help and exits for --help, and exits
// for unknown flags). With --help, --helpfull, --version and the like, the config file and the
// environment are not read, so a broken config file cannot hide the help.
// Returns the positional arguments, argv[0] first; INVALID_ARGUMENT (see above) when the config
// file or the environment is unusable. `program` names the binary in messages.
absl::StatusOr<std::vector<char*>> LoadConfig(int argc, char** argv, std::string_view program,
                                              std::string_view description = "");

// The environment variable of a flag: "EXPORTD_" + the name in capitals.
std::string EnvironmentVariableOf(std::string_view flag_name);

}  // namespace exportd

ABSL_DECLARE_FLAG(std::string, config);
