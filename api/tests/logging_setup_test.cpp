// configure_logging(): Firecracker's logger settings onto the log facade.
#include "api/logging_setup.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace hvz::api {
namespace {

using L = config::LoggerConfig::Level;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The lines of `path` without their 27-character timestamps.
std::vector<std::string> bodies(const std::string& path) {
  std::vector<std::string> out;
  std::stringstream in(read_all(path));
  for (std::string line; std::getline(in, line);) {
    out.push_back(line.size() > 27 ? line.substr(27) : "<short>" + line);
  }
  return out;
}

class LoggingSetupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/hvz-logger-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/hvz.log";
    log::set_thread_name("api");
  }
  void TearDown() override {
    log::reset_output();
    log::set_level(log::Level::kWarn);
    log::set_show_level(true);
    log::set_show_origin(false);
    log::set_thread_name("");
    ::unlink(path_.c_str());
    ::unlink((dir_ + "/other.log").c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_;
  std::string path_;
};

TEST_F(LoggingSetupTest, AppliesPathLevelAndLineShape) {
  config::LoggerConfig c;
  c.log_path = path_;
  c.level = L::kInfo;
  c.show_level = false;
  c.show_log_origin = true;
  auto r = configure_logging(c);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(log::level(), log::Level::kInfo);
  EXPECT_FALSE(log::show_level());
  EXPECT_TRUE(log::show_origin());
  LOG_DEBUG("hidden");
  const int line = __LINE__ + 1;
  LOG_INFO("shown %d", 1);
  const std::vector<std::string> want = {
      " [api] api/tests/logging_setup_test.cpp:" + std::to_string(line) + ": shown 1"};
  EXPECT_EQ(bodies(path_), want);
}

TEST_F(LoggingSetupTest, DefaultsMatchFirecracker) {
  config::LoggerConfig c;  // Warning, level shown, no origin
  c.log_path = path_;
  ASSERT_TRUE(configure_logging(c));
  LOG_INFO("hidden");
  LOG_WARN("shown");
  const std::vector<std::string> want = {" WARN  [api] shown"};
  EXPECT_EQ(bodies(path_), want);
}

TEST_F(LoggingSetupTest, OffAndTrace) {
  config::LoggerConfig c;
  c.log_path = path_;
  c.level = L::kOff;
  ASSERT_TRUE(configure_logging(c));
  LOG_ERROR("hidden");
  c.log_path.clear();  // keep the output
  c.level = L::kTrace;
  ASSERT_TRUE(configure_logging(c));
  LOG_TRACE("trace");
  LOG_DEBUG("debug");
  const std::vector<std::string> want = {" TRACE [api] trace", " DEBUG [api] debug"};
  EXPECT_EQ(bodies(path_), want);
}

TEST_F(LoggingSetupTest, BadPathChangesNothing) {
  config::LoggerConfig c;
  c.log_path = path_;
  c.level = L::kWarn;
  ASSERT_TRUE(configure_logging(c));

  config::LoggerConfig bad;
  bad.log_path = dir_ + "/missing-dir/hvz.log";
  bad.level = L::kDebug;
  bad.show_level = false;
  auto r = configure_logging(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find(bad.log_path), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("logger"), std::string::npos) << r.error().message();
  EXPECT_EQ(log::level(), log::Level::kWarn);
  EXPECT_TRUE(log::show_level());
  LOG_WARN("same output");
  const std::vector<std::string> want = {" WARN  [api] same output"};
  EXPECT_EQ(bodies(path_), want);
}

TEST_F(LoggingSetupTest, SwitchesToANewPath) {
  config::LoggerConfig c;
  c.log_path = path_;
  ASSERT_TRUE(configure_logging(c));
  LOG_WARN("first");
  c.log_path = dir_ + "/other.log";
  ASSERT_TRUE(configure_logging(c));
  LOG_WARN("second");
  EXPECT_EQ(bodies(path_), std::vector<std::string>{" WARN  [api] first"});
  EXPECT_EQ(bodies(c.log_path), std::vector<std::string>{" WARN  [api] second"});
}

}  // namespace
}  // namespace hvz::api
