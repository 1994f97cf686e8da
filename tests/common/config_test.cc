// Configuration from the command line, the environment and a config file (common/config.h):
// precedence, the file's syntax, and errors naming the file, the line and the flag.
#include "common/config.h"

#include <stdlib.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

ABSL_FLAG(std::string, test_name, "default-name", "A string flag of the test.");
ABSL_FLAG(int, test_count, 1, "An int flag of the test.");
ABSL_FLAG(bool, test_switch, false, "A bool flag of the test.");
ABSL_FLAG(absl::Duration, test_wait, absl::Seconds(1), "A duration flag of the test.");

namespace exportd::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Sets environment variables for one test and removes them after it.
class ScopedEnvironment {
 public:
  ~ScopedEnvironment() {
    for (const std::string& name : names_) unsetenv(name.c_str());
  }
  void Set(const std::string& name, const std::string& value) {
    setenv(name.c_str(), value.c_str(), 1);
    names_.push_back(name);
  }

 private:
  std::vector<std::string> names_;
};

class ConfigTest : public ::testing::Test {
 protected:
  // Writes a config file and returns its path.
  std::string File(const std::string& text, const std::string& name = "test.conf") {
    const std::string path = dir_.path() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  // LoadConfig on these arguments (argv[0] added).
  absl::StatusOr<std::vector<std::string>> Load(std::vector<std::string> args) {
    args.insert(args.begin(), "config_test");
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    absl::StatusOr<std::vector<char*>> positional =
        LoadConfig(static_cast<int>(args.size()), argv.data(), "config_test", "Tests flags.");
    if (!positional.ok()) return positional.status();
    std::vector<std::string> out;
    for (char* arg : *positional) out.push_back(arg);
    return out;
  }

  absl::FlagSaver saver_;  // Every test starts from the defaults.
  ScopedEnvironment env_;
  test_support::TempDir dir_;
};

TEST_F(ConfigTest, DefaultsWithoutAnything) {
  ASSERT_OK(Load({}));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "default-name");
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 1);
}

TEST_F(ConfigTest, TheFileSetsFlags) {
  const std::string file = File(
      "# a comment\n"
      "\n"
      "test_name = from file\n"
      "   test_count=3   \n"
      "test_switch = true\n"
      "test_wait = 1m30s\n"
      "  # an indented comment\n");
  ASSERT_OK(Load({"--config=" + file}));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "from file");
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 3);
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_switch));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_wait), absl::Seconds(90));
  EXPECT_EQ(absl::GetFlag(FLAGS_config), file);
}

TEST_F(ConfigTest, AValueIsTheRestOfTheLine) {
  ASSERT_OK(Load({"--config=" + File("test_name = a = b # not a comment\ntest_count =  7\n")}));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "a = b # not a comment");
}

TEST_F(ConfigTest, AnEmptyValueIsEmpty) {
  ASSERT_OK(Load({"--config=" + File("test_name =\n")}));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "");
}

TEST_F(ConfigTest, CommandLineOverEnvironmentOverFileOverDefault) {
  const std::string file = File("test_name = file\ntest_count = 3\ntest_switch = true\n");
  env_.Set("EXPORTD_TEST_NAME", "environment");
  env_.Set("EXPORTD_TEST_COUNT", "5");
  ASSERT_OK(Load({"--config=" + file, "--test_name=command line"}));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "command line");    // command line
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 5);                // environment over file
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_switch));                // file over default
  EXPECT_EQ(absl::GetFlag(FLAGS_test_wait), absl::Seconds(1));  // default
}

TEST_F(ConfigTest, TheEnvironmentAloneSetsFlags) {
  env_.Set("EXPORTD_TEST_WAIT", "250ms");
  env_.Set("EXPORTD_TEST_SWITCH", "true");
  ASSERT_OK(Load({}));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_wait), absl::Milliseconds(250));
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_switch));
}

TEST_F(ConfigTest, AnEmptyEnvironmentVariableIsUnset) {
  env_.Set("EXPORTD_TEST_COUNT", "");
  ASSERT_OK(Load({"--config=" + File("test_count = 4\n")}));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 4);
}

TEST_F(ConfigTest, TheFileCanBeNamedByTheEnvironmentOrAfterASpace) {
  env_.Set("EXPORTD_CONFIG", File("test_count = 8\n", "a.conf"));
  ASSERT_OK(Load({}));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 8);
  // The command line's file wins over EXPORTD_CONFIG.
  ASSERT_OK(Load({"--config", File("test_count = 9\n", "b.conf")}));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 9);
}

TEST_F(ConfigTest, PositionalArgumentsAreReturned) {
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> positional,
                       Load({"seed-demo", "--test_count=2", "more"}));
  EXPECT_THAT(positional, ElementsAre("config_test", "seed-demo", "more"));
}

TEST_F(ConfigTest, ALineWithoutEqualsNamesTheFileAndLine) {
  const std::string file = File("test_count = 2\n# fine\ntest_name\n");
  EXPECT_THAT(Load({"--config=" + file}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       file + ":3: expected `name = value`, got \"test_name\""));
}

TEST_F(ConfigTest, AnUnknownNameIsAnError) {
  const std::string file = File("\n\ntest_cuont = 2\n");
  EXPECT_THAT(Load({"--config=" + file}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       file + ":3: unknown flag \"test_cuont\" (config_test --help lists the "
                              "flags)"));
}

TEST_F(ConfigTest, AbslOwnFlagsAreNotConfiguration) {
  const std::string file = File("flagfile = /etc/passwd\n");
  EXPECT_THAT(Load({"--config=" + file}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(":1: unknown flag")));
}

TEST_F(ConfigTest, ABadValueNamesTheFileLineAndFlag) {
  const std::string file = File("test_name = x\ntest_count = many\n");
  EXPECT_THAT(Load({"--config=" + file}), StatusIs(absl::StatusCode::kInvalidArgument,
                                                   HasSubstr(file + ":2: flag test_count: ")));
  const std::string duration = File("test_wait = soon\n", "d.conf");
  EXPECT_THAT(Load({"--config=" + duration}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(":1: flag test_wait: ")));
  const std::string boolean = File("test_switch = maybe\n", "b.conf");
  EXPECT_THAT(Load({"--config=" + boolean}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(":1: flag test_switch: ")));
}

TEST_F(ConfigTest, ABadEnvironmentValueNamesTheVariableAndFlag) {
  env_.Set("EXPORTD_TEST_COUNT", "ten");
  EXPECT_THAT(Load({}), StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("environment variable EXPORTD_TEST_COUNT: flag "
                                           "test_count: ")));
}

TEST_F(ConfigTest, AFlagSetTwiceInTheFileIsAnError) {
  const std::string file = File("test_count = 1\ntest_count = 2\n");
  EXPECT_THAT(Load({"--config=" + file}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       file + ":2: flag test_count is set twice (first on line 1)"));
}

TEST_F(ConfigTest, TheFileCannotNameAnotherFile) {
  const std::string file = File("config = other.conf\n");
  EXPECT_THAT(Load({"--config=" + file}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(file + ":1: config cannot")));
}

TEST_F(ConfigTest, AMissingFileIsAnError) {
  const std::string file = dir_.path() + "/missing.conf";
  EXPECT_THAT(Load({"--config=" + file}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(file + ": cannot read the config file")));
}

TEST(ConfigNamesTest, EnvironmentVariableOfAFlag) {
  EXPECT_EQ(EnvironmentVariableOf("data_dir"), "EXPORTD_DATA_DIR");
  EXPECT_EQ(EnvironmentVariableOf("log_level"), "EXPORTD_LOG_LEVEL");
}

}  // namespace
}  // namespace exportd::testing
