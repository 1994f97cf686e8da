#include "common/config.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <string>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/str_cat.h"

ABSL_FLAG(std::string, config, "",
          "A config file of `name = value` lines setting flags (# comments, blank lines); "
          "also EXPORTD_CONFIG. The command line and the environment win over it.");

namespace exportd {
namespace {

constexpr std::string_view kConfigFlag = "config";

absl::string_view Piece(std::string_view text) { return {text.data(), text.size()}; }

// Flags of absl itself (--flagfile, --fromenv, --help, ...) are not configuration.
bool IsAbslFlag(const absl::CommandLineFlag& flag) {
  return absl::StrContains(flag.Filename(), "absl/flags/");
}

// The binary's own flags, by name.
std::map<std::string, absl::CommandLineFlag*> ProgramFlags() {
  std::map<std::string, absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (flag->IsRetired() || IsAbslFlag(*flag)) continue;
    flags.emplace(std::string(name), flag);
  }
  return flags;
}

// True when the arguments ask absl for help or the version: then nothing else is read.
bool AsksForHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--")) {
      if (!absl::ConsumePrefix(&arg, "-")) continue;
    }
    if (absl::StartsWith(arg, "help") || absl::StartsWith(arg, "version") ||
        absl::StartsWith(arg, "only_check_args")) {
      return true;
    }
  }
  return false;
}

// The config file named on the command line (--config=FILE, --config FILE), else by
// EXPORTD_CONFIG; empty when none.
std::string ConfigFile(int argc, char** argv) {
  std::string file;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) continue;
    if (!absl::ConsumePrefix(&arg, Piece(kConfigFlag))) continue;
    if (absl::ConsumePrefix(&arg, "=")) {
      file = std::string(arg);
    } else if (arg.empty() && i + 1 < argc) {
      file = argv[++i];
    }
  }
  if (!file.empty()) return file;
  const char* from_environment = std::getenv(EnvironmentVariableOf(kConfigFlag).c_str());
  return from_environment == nullptr ? "" : from_environment;
}

absl::Status ApplyConfigFile(const std::string& path,
                             const std::map<std::string, absl::CommandLineFlag*>& flags,
                             std::string_view program) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        Cat(path, ": cannot read the config file (", std::strerror(errno), ")"));
  }
  std::map<std::string, int> set_on_line;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string where = Cat(path, ":", number, ": ");
    const absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text.front() == '#') continue;
    const size_t equals = text.find('=');
    if (equals == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          Cat(where, "expected `name = value`, got \"", text.substr(0, 80), "\""));
    }
    const std::string name(absl::StripAsciiWhitespace(text.substr(0, equals)));
    const absl::string_view value = absl::StripAsciiWhitespace(text.substr(equals + 1));
    if (name.empty()) return absl::InvalidArgumentError(Cat(where, "the flag name is missing"));
    if (name == kConfigFlag) {
      return absl::InvalidArgumentError(
          Cat(where, "config cannot be set in a config file (files do not include others)"));
    }
    auto flag = flags.find(name);
    if (flag == flags.end()) {
      return absl::InvalidArgumentError(Cat(where, "unknown flag \"", name.substr(0, 80), "\" (",
                                            program, " --help lists the flags)"));
    }
    if (auto [earlier, inserted] = set_on_line.emplace(name, number); !inserted) {
      return absl::InvalidArgumentError(
          Cat(where, "flag ", name, " is set twice (first on line ", earlier->second, ")"));
    }
    std::string error;
    if (!flag->second->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(Cat(where, "flag ", name, ": ", error));
    }
  }
  if (in.bad()) {
    return absl::InvalidArgumentError(Cat(path, ": cannot read the config file"));
  }
  return absl::OkStatus();
}

absl::Status ApplyEnvironment(const std::map<std::string, absl::CommandLineFlag*>& flags) {
  for (const auto& [name, flag] : flags) {
    if (name == kConfigFlag) continue;  // Read by ConfigFile.
    const std::string variable = EnvironmentVariableOf(name);
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr || *value == '\0') continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          Cat("environment variable ", variable, ": flag ", name, ": ", error));
    }
  }
  return absl::OkStatus();
}

void SetUsage(std::string_view description) {
  static std::once_flag once;  // absl allows one usage message per process.
  std::call_once(once, [&] {
    // absl's help starts with the program's name.
    absl::SetProgramUsageMessage(
        Cat(description.empty() ? "" : Cat(description, "\n\n"),
            "Every flag can also be set in the environment, as EXPORTD_ and the flag's name in "
            "capitals (EXPORTD_LOG_LEVEL=debug), or in a config file named by --config=FILE or "
            "EXPORTD_CONFIG=FILE, one `name = value` per line (# starts a comment line). The "
            "command line wins over the environment, the environment over the config file, the "
            "config file over the default.\n\nFlags:"));
  });
  absl::FlagsUsageConfig usage;
  // --help lists every flag of the project (not only those of the main file), with its
  // default; --helpfull adds absl's own.
  usage.contains_help_flags = [](absl::string_view file) {
    return !absl::StrContains(file, "absl/flags/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  // Files named as in the source tree ("server/main.cc"), not by the build's absolute path.
  usage.normalize_filename = [](absl::string_view file) {
    absl::string_view root = __FILE__;
    if (absl::ConsumeSuffix(&root, "common/config.cc") && absl::ConsumePrefix(&file, root)) {
      return std::string(file);
    }
    absl::ConsumePrefix(&file, "/");
    return std::string(file);
  };
  absl::SetFlagsUsageConfig(usage);
}

}  // namespace

std::string EnvironmentVariableOf(std::string_view flag_name) {
  return absl::AsciiStrToUpper(Cat("EXPORTD_", flag_name));
}

absl::StatusOr<std::vector<char*>> LoadConfig(int argc, char** argv, std::string_view program,
                                              std::string_view description) {
  SetUsage(description);
  if (!AsksForHelp(argc, argv)) {
    const std::map<std::string, absl::CommandLineFlag*> flags = ProgramFlags();
    if (const std::string file = ConfigFile(argc, argv); !file.empty()) {
      if (absl::Status applied = ApplyConfigFile(file, flags, program); !applied.ok()) {
        return applied;
      }
    }
    if (absl::Status applied = ApplyEnvironment(flags); !applied.ok()) return applied;
  }
  return absl::ParseCommandLine(argc, argv);
}

}  // namespace exportd
