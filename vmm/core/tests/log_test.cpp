// The log facade: line format, level filtering, outputs (file, FIFO) and
// whole lines from concurrent writers, also while the output is switched.
#include "vmm/core/log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "vmm/core/metrics.hpp"

namespace hvz::log {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos) {
      out.push_back(text.substr(start) + "<no newline>");
      break;
    }
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

bool is_digits(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return !s.empty();
}

// "2026-11-24T21:00:00.123456Z"
constexpr std::size_t kTimestampLen = 27;
bool starts_with_timestamp(std::string_view line) {
  if (line.size() < kTimestampLen) return false;
  const std::string_view t = line.substr(0, kTimestampLen);
  return is_digits(t.substr(0, 4)) && t[4] == '-' && is_digits(t.substr(5, 2)) && t[7] == '-' &&
         is_digits(t.substr(8, 2)) && t[10] == 'T' && is_digits(t.substr(11, 2)) && t[13] == ':' &&
         is_digits(t.substr(14, 2)) && t[16] == ':' && is_digits(t.substr(17, 2)) && t[19] == '.' &&
         is_digits(t.substr(20, 6)) && t[26] == 'Z';
}

// What follows the timestamp.
std::string rest(const std::string& line) {
  return line.size() > kTimestampLen ? line.substr(kTimestampLen) : std::string();
}

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/hvz-log-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/hvz.log";
    set_level(Level::kWarn);
    set_thread_name("tester");
    auto r = set_output_path(path_);
    ASSERT_TRUE(r) << r.error().message();
  }
  void TearDown() override {
    reset_output();
    set_level(Level::kWarn);
    set_show_level(true);
    set_show_origin(false);
    set_thread_name("");
    for (const auto& f : created_) ::unlink(f.c_str());
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  std::string file(const std::string& name) {
    created_.push_back(dir_ + "/" + name);
    return created_.back();
  }
  std::vector<std::string> lines() { return split_lines(read_all(path_)); }

  std::string dir_;
  std::string path_;
  std::vector<std::string> created_;
};

TEST_F(LogTest, LineHasTimestampLevelAndThreadName) {
  LOG_WARN("hello %d", 42);
  LOG_ERROR("bad %s", "thing");
  const auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_TRUE(starts_with_timestamp(l[0])) << l[0];
  EXPECT_EQ(rest(l[0]), " WARN  [tester] hello 42");
  EXPECT_TRUE(starts_with_timestamp(l[1])) << l[1];
  EXPECT_EQ(rest(l[1]), " ERROR [tester] bad thing");
}

TEST_F(LogTest, UnnamedThreadIsHvz) {
  std::thread([] { LOG_WARN("from a thread"); }).join();
  const auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(rest(l[0]), " WARN  [hvz] from a thread");
}

TEST_F(LogTest, ShowLevelFalseOmitsLevel) {
  set_show_level(false);
  EXPECT_FALSE(show_level());
  LOG_WARN("plain");
  const auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_TRUE(starts_with_timestamp(l[0])) << l[0];
  EXPECT_EQ(rest(l[0]), " [tester] plain");
}

TEST_F(LogTest, ShowOriginAddsSourceFileAndLine) {
  set_show_origin(true);
  const int line = __LINE__ + 1;
  LOG_ERROR("where %s", "here");
  write(Level::kWarn, "no origin from write()");
  const auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(rest(l[0]),
            " ERROR [tester] vmm/core/tests/log_test.cpp:" + std::to_string(line) + ": where here");
  EXPECT_EQ(rest(l[1]), " WARN  [tester] no origin from write()");
}

TEST_F(LogTest, OriginWithoutLevel) {
  set_show_origin(true);
  set_show_level(false);
  const int line = __LINE__ + 1;
  LOG_WARN("x");
  const auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(rest(l[0]), " [tester] vmm/core/tests/log_test.cpp:" + std::to_string(line) + ": x");
}

TEST_F(LogTest, LevelFiltering) {
  set_level(Level::kInfo);
  EXPECT_EQ(level(), Level::kInfo);
  LOG_TRACE("trace1");
  LOG_DEBUG("debug1");
  LOG_INFO("info1");
  LOG_WARN("warn1");
  LOG_ERROR("error1");
  set_level(Level::kOff);
  LOG_ERROR("error2");
  LOG_WARN("warn2");
  set_level(Level::kError);
  LOG_WARN("warn3");
  LOG_ERROR("error3");
  set_level(Level::kTrace);
  LOG_TRACE("trace4");
  LOG_DEBUG("debug4");
  set_level(Level::kDebug);
  LOG_TRACE("trace5");
  LOG_DEBUG("debug5");
  std::vector<std::string> got;
  for (const auto& l : lines()) got.push_back(rest(l));
  const std::vector<std::string> want = {
      " INFO  [tester] info1",  " WARN  [tester] warn1",  " ERROR [tester] error1",
      " ERROR [tester] error3", " TRACE [tester] trace4", " DEBUG [tester] debug4",
      " DEBUG [tester] debug5",
  };
  EXPECT_EQ(got, want);
}

TEST_F(LogTest, ControlCharactersCannotForgeLines) {
  LOG_WARN("guest says %s", "a\nFAKE\rb\x1b[1m\tc");
  const auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(rest(l[0]), " WARN  [tester] guest says a?FAKE?b?[1m\tc");
}

TEST_F(LogTest, LongMessageIsTruncatedToOneLine) {
  const std::string big(5000, 'x');
  LOG_WARN("%s", big.c_str());
  const std::string text = read_all(path_);
  EXPECT_LE(text.size(), kMaxLineBytes);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(split_lines(text).size(), 1u);
}

TEST_F(LogTest, PreservesErrno) {
  errno = ENOENT;
  LOG_WARN("something");
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(LogTest, FileOutputIsAppended) {
  const std::string other = file("other.log");
  {
    std::ofstream out(other);
    out << "existing\n";
  }
  ASSERT_TRUE(set_output_path(other));
  LOG_WARN("appended");
  const auto l = split_lines(read_all(other));
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0], "existing");
  EXPECT_EQ(rest(l[1]), " WARN  [tester] appended");
  EXPECT_TRUE(lines().empty());  // nothing went to the previous output
}

TEST_F(LogTest, OpenedOutputIsAppendCloexecNonBlocking) {
  auto fd = open_output_file(file("flags.log"));
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_NE(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC, 0);
  const int fl = ::fcntl(fd->get(), F_GETFL);
  EXPECT_NE(fl & O_APPEND, 0);
  EXPECT_NE(fl & O_NONBLOCK, 0);
}

TEST_F(LogTest, UnopenablePathIsAClearErrorAndKeepsTheOutput) {
  const std::string bad = dir_ + "/missing-dir/x.log";
  auto r = set_output_path(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find(bad), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("No such file"), std::string::npos) << r.error().message();
  EXPECT_FALSE(set_output_path(dir_));  // a directory
  EXPECT_FALSE(set_output_path(""));
  LOG_WARN("still here");
  const auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(rest(l[0]), " WARN  [tester] still here");
}

TEST_F(LogTest, SetOutputFdDoesNotTakeOwnership) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  set_output(p[1]);
  LOG_WARN("to the pipe");
  reset_output();
  EXPECT_EQ(::fcntl(p[1], F_GETFD) >= 0, true);  // still open
  char buf[256] = {};
  const ssize_t n = ::read(p[0], buf, sizeof buf - 1);
  ASSERT_GT(n, 0);
  EXPECT_EQ(rest(std::string(buf, static_cast<std::size_t>(n))), " WARN  [tester] to the pipe\n");
  ::close(p[0]);
  ::close(p[1]);
}

TEST_F(LogTest, FifoNeedsNoReaderAndNeverBlocks) {
  const std::string fifo = file("log.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Opening does not wait for a reader; the pipe keeps lines until one comes.
  auto r = set_output_path(fifo);
  ASSERT_TRUE(r) << r.error().message();
  LOG_WARN("before the reader");
  UniqueFd reader(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(reader);

  // Nobody drains the pipe: lines beyond its capacity are dropped and
  // counted, the writer does not block (a hang here is the failure).
  auto& missed = metrics::registry().group("logger").counter("missed_log_count");
  const std::uint64_t missed_before = missed.value();
  const std::string pad(500, 'p');
  constexpr int kLines = 4000;  // ~2 MB, beyond any pipe's default capacity
  for (int i = 0; i < kLines; ++i) LOG_WARN("line %d %s", i, pad.c_str());
  const std::uint64_t dropped = missed.value() - missed_before;
  EXPECT_GT(dropped, 0u);

  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(reader.get(), buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  const auto l = split_lines(text);
  ASSERT_FALSE(l.empty());
  EXPECT_EQ(rest(l[0]), " WARN  [tester] before the reader");
  EXPECT_EQ(l.size() - 1 + dropped, static_cast<std::size_t>(kLines));
  for (std::size_t i = 1; i < l.size(); ++i) {
    ASSERT_TRUE(starts_with_timestamp(l[i])) << l[i];
    ASSERT_EQ(rest(l[i]), " WARN  [tester] line " + std::to_string(i - 1) + " " + pad);
  }
  // Drained: lines get through again.
  LOG_WARN("after draining");
  const ssize_t n = ::read(reader.get(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(rest(std::string(buf, static_cast<std::size_t>(n))),
            " WARN  [tester] after draining\n");
}

// Checks "<ts> INFO  [w<t>] t=<t> i=<i> <pad>" lines: each (t, i) exactly once.
void expect_whole_lines(const std::vector<std::string>& all, int threads, int per_thread,
                        const std::string& pad) {
  std::set<std::pair<int, int>> seen;
  for (const auto& line : all) {
    ASSERT_TRUE(starts_with_timestamp(line)) << line;
    int t = -1;
    int i = -1;
    char tail[16] = {};
    const std::string r = rest(line);
    ASSERT_EQ(std::sscanf(r.c_str(), " INFO  [w%*d] t=%d i=%d %15s", &t, &i, tail), 3) << line;
    ASSERT_EQ(r, " INFO  [w" + std::to_string(t) + "] t=" + std::to_string(t) +
                     " i=" + std::to_string(i) + " " + pad)
        << line;
    ASSERT_TRUE(seen.emplace(t, i).second) << "twice: " << line;
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(threads * per_thread));
}

TEST_F(LogTest, ConcurrentWritersProduceWholeLines) {
  set_level(Level::kInfo);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 400;
  const std::string pad(300, 'z');
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([t, &pad] {
      set_thread_name(("w" + std::to_string(t)).c_str());
      for (int i = 0; i < kPerThread; ++i) LOG_INFO("t=%d i=%d %s", t, i, pad.c_str());
    });
  }
  for (auto& w : workers) w.join();
  expect_whole_lines(lines(), kThreads, kPerThread, pad);
}

TEST_F(LogTest, SwitchingOutputWhileOthersLog) {
  set_level(Level::kInfo);
  const std::string a = file("a.log");
  const std::string b = file("b.log");
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  const std::string pad(100, 'q');
  std::atomic<int> done{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([t, &pad, &done] {
      set_thread_name(("w" + std::to_string(t)).c_str());
      for (int i = 0; i < kPerThread; ++i) LOG_INFO("t=%d i=%d %s", t, i, pad.c_str());
      done.fetch_add(1);
    });
  }
  for (int k = 0; done.load() < kThreads; ++k) {
    auto r = set_output_path(k % 2 ? a : b);
    if (!r) {
      ADD_FAILURE() << r.error().message();
      break;
    }
  }
  for (auto& w : workers) w.join();
  std::vector<std::string> all = lines();
  for (const auto& f : {a, b}) {
    for (auto& l : split_lines(read_all(f))) all.push_back(std::move(l));
  }
  expect_whole_lines(all, kThreads, kPerThread, pad);
}

TEST(LogLevel, ParsesEveryNameInAnyCase) {
  EXPECT_EQ(parse_level("off"), Level::kOff);
  EXPECT_EQ(parse_level("Error"), Level::kError);
  EXPECT_EQ(parse_level("warn"), Level::kWarn);
  EXPECT_EQ(parse_level("WARNING"), Level::kWarn);
  EXPECT_EQ(parse_level("Info"), Level::kInfo);
  EXPECT_EQ(parse_level("dEbUg"), Level::kDebug);
  EXPECT_EQ(parse_level("trace"), Level::kTrace);
}

TEST(LogLevel, RefusesOtherNames) {
  for (const char* bad : {"", "loud", "warnings", "war", " info", "info ", "warningwarning", "3"}) {
    EXPECT_EQ(parse_level(bad), std::nullopt) << '"' << bad << '"';
  }
  EXPECT_EQ(parse_level(std::string_view("info\0", 5)), std::nullopt);
}

TEST(LogLevel, NamesAreFirecrackersAndParseBack) {
  EXPECT_STREQ(level_name(Level::kOff), "Off");
  EXPECT_STREQ(level_name(Level::kError), "Error");
  EXPECT_STREQ(level_name(Level::kWarn), "Warning");
  EXPECT_STREQ(level_name(Level::kInfo), "Info");
  EXPECT_STREQ(level_name(Level::kDebug), "Debug");
  EXPECT_STREQ(level_name(Level::kTrace), "Trace");
  for (Level l :
       {Level::kOff, Level::kError, Level::kWarn, Level::kInfo, Level::kDebug, Level::kTrace}) {
    EXPECT_EQ(parse_level(level_name(l)), l) << level_name(l);
  }
}

}  // namespace
}  // namespace hvz::log
