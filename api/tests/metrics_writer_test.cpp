// MetricsWriter: JSON lines of deltas, periodic and final flushes, FIFOs
// and write errors.
#include "api/metrics_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace hvz::api {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

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
      out.push_back(text.substr(start));
      break;
    }
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

class MetricsWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/hvz-metrics-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/metrics.json";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::unlink((dir_ + "/metrics.fifo").c_str());
    ::rmdir(dir_.c_str());
  }
  std::unique_ptr<MetricsWriter> make(std::chrono::milliseconds interval = 0ms) {
    MetricsWriterOptions o;
    o.interval = interval;
    o.registry = &registry_;
    auto w = MetricsWriter::create(path_, o);
    EXPECT_TRUE(w) << w.error().message();
    return w ? std::move(*w) : nullptr;
  }
  // Every line of the file, parsed (a line that is not JSON fails the test).
  std::vector<json> parsed_lines() {
    std::vector<json> out;
    const std::string text = read_all(path_);
    EXPECT_TRUE(text.empty() || text.back() == '\n');
    for (const auto& l : split_lines(text)) {
      json j = json::parse(l, nullptr, false);
      EXPECT_FALSE(j.is_discarded()) << l;
      EXPECT_TRUE(j.is_object()) << l;
      out.push_back(std::move(j));
    }
    return out;
  }

  metrics::Registry registry_;
  std::string dir_;
  std::string path_;
};

TEST_F(MetricsWriterTest, FlushWritesOneJsonLineWithEveryGroup) {
  registry_.group("vcpu").counter("exit_io_in").add(3);
  registry_.group("vcpu").counter("exit_mmio_write").add(1);
  registry_.group("block_rootfs").counter("read_count").add(2);
  registry_.group("net_eth0");  // no counters yet: still a group
  auto w = make();
  ASSERT_TRUE(w);
  const std::uint64_t before = now_ms();
  ASSERT_TRUE(w->flush());
  const std::uint64_t after = now_ms();
  const auto lines = parsed_lines();
  ASSERT_EQ(lines.size(), 1u);
  const json& j = lines[0];
  ASSERT_TRUE(j["utc_timestamp_ms"].is_number_unsigned());
  EXPECT_GE(j["utc_timestamp_ms"].get<std::uint64_t>(), before);
  EXPECT_LE(j["utc_timestamp_ms"].get<std::uint64_t>(), after);
  EXPECT_EQ(j["vcpu"], json({{"exit_io_in", 3}, {"exit_mmio_write", 1}}));
  EXPECT_EQ(j["block_rootfs"], json({{"read_count", 2}}));
  EXPECT_EQ(j["net_eth0"], json::object());
  // Firecracker's logger group is always there.
  EXPECT_EQ(j["logger"], json({{"metrics_fails", 0},
                               {"missed_metrics_count", 0},
                               {"missed_log_count", 0},
                               {"log_fails", 0}}));
  EXPECT_EQ(j.size(), 5u);
  // The timestamp comes first, as in Firecracker's lines.
  EXPECT_EQ(split_lines(read_all(path_))[0].rfind("{\"utc_timestamp_ms\":", 0), 0u);
}

TEST_F(MetricsWriterTest, DeltasResetBetweenFlushes) {
  auto& c = registry_.group("api_server").counter("process_startup_time_us");
  auto& s = registry_.group("block_rootfs").summary("read_latency_us");
  c.add(3);
  s.record(10);
  s.record(30);
  auto w = make();
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->flush());
  c.add(5);
  s.record(7);
  ASSERT_TRUE(w->flush());
  ASSERT_TRUE(w->flush());
  const auto lines = parsed_lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["api_server"]["process_startup_time_us"], 3);
  EXPECT_EQ(lines[1]["api_server"]["process_startup_time_us"], 5);
  EXPECT_EQ(lines[2]["api_server"]["process_startup_time_us"], 0);
  EXPECT_EQ(lines[0]["block_rootfs"], json({{"read_latency_us_count", 2},
                                            {"read_latency_us_sum", 40},
                                            {"read_latency_us_max", 30}}));
  EXPECT_EQ(
      lines[1]["block_rootfs"],
      json({{"read_latency_us_count", 1}, {"read_latency_us_sum", 7}, {"read_latency_us_max", 7}}));
  EXPECT_EQ(
      lines[2]["block_rootfs"],
      json({{"read_latency_us_count", 0}, {"read_latency_us_sum", 0}, {"read_latency_us_max", 0}}));
  EXPECT_EQ(c.value(), 8u);  // totals are untouched
}

TEST_F(MetricsWriterTest, FileIsAppended) {
  {
    std::ofstream out(path_);
    out << "{\"old\":1}\n";
  }
  auto w = make();
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->flush());
  const auto lines = parsed_lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], json({{"old", 1}}));
  EXPECT_TRUE(lines[1].contains("utc_timestamp_ms"));
}

TEST_F(MetricsWriterTest, FinalFlushOnDestruction) {
  auto w = make();
  ASSERT_TRUE(w);
  registry_.group("vcpu").counter("failures").add(4);
  w.reset();
  const auto lines = parsed_lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["vcpu"]["failures"], 4);
}

TEST_F(MetricsWriterTest, PeriodicFlushes) {
  auto& c = registry_.group("vcpu").counter("exits");
  auto w = make(5ms);
  ASSERT_TRUE(w);
  c.add(1);
  // Hang guard only: the thread writes every 5 ms.
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (split_lines(read_all(path_)).size() < 3 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  c.add(2);
  w.reset();  // final flush
  const auto lines = parsed_lines();
  ASSERT_GE(lines.size(), 4u);
  std::uint64_t total = 0;
  for (const auto& j : lines) total += j["vcpu"]["exits"].get<std::uint64_t>();
  EXPECT_EQ(total, 3u);  // every increase reported exactly once
  for (std::size_t i = 1; i < lines.size(); ++i) {
    EXPECT_GE(lines[i]["utc_timestamp_ms"].get<std::uint64_t>(),
              lines[i - 1]["utc_timestamp_ms"].get<std::uint64_t>());
  }
}

TEST_F(MetricsWriterTest, DestructionDoesNotWaitForTheInterval) {
  auto w = make(std::chrono::hours(1));
  ASSERT_TRUE(w);
  const auto start = std::chrono::steady_clock::now();
  w.reset();
  // Generous: a sleep-based loop would take the whole hour.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  EXPECT_EQ(parsed_lines().size(), 1u);
}

TEST_F(MetricsWriterTest, UnopenablePathIsAClearError) {
  const std::string bad = dir_ + "/missing-dir/metrics.json";
  auto w = MetricsWriter::create(bad);
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().message().find(bad), std::string::npos) << w.error().message();
  EXPECT_NE(w.error().message().find("No such file"), std::string::npos) << w.error().message();
  EXPECT_FALSE(MetricsWriter::create(dir_));  // a directory
  EXPECT_FALSE(MetricsWriter::create(""));
}

TEST_F(MetricsWriterTest, WriteErrorsAreCountedAndReported) {
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no /dev/full";
  MetricsWriterOptions o;
  o.interval = 0ms;
  o.registry = &registry_;
  auto w = MetricsWriter::create("/dev/full", o);
  ASSERT_TRUE(w) << w.error().message();
  auto r = (*w)->flush();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("/dev/full"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("No space left"), std::string::npos) << r.error().message();
  EXPECT_FALSE((*w)->flush());
  EXPECT_EQ(registry_.group("logger").counter("metrics_fails").value(), 2u);
}

TEST_F(MetricsWriterTest, FifoWithoutReaderNeitherBlocksNorCorruptsLaterLines) {
  const std::string fifo = dir_ + "/metrics.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  MetricsWriterOptions o;
  o.interval = 0ms;
  o.write_timeout = 10ms;
  o.registry = &registry_;
  auto w = MetricsWriter::create(fifo, o);  // no reader: opening does not wait
  ASSERT_TRUE(w) << w.error().message();

  // A reader that does not read yet, on a 64 KiB pipe, and a line of
  // ~100 KiB: the flush writes what fits, waits write_timeout, gives up.
  UniqueFd reader(::open(fifo.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  ASSERT_TRUE(reader);
  ASSERT_EQ(::fcntl(reader.get(), F_SETPIPE_SZ, 65536), 65536);
  auto& g = registry_.group("big");
  for (int i = 0; i < 3000; ++i) g.counter("counter_with_a_long_name_" + std::to_string(i)).add(1);
  auto r = (*w)->flush();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find(fifo), std::string::npos) << r.error().message();
  EXPECT_EQ(registry_.group("logger").counter("missed_metrics_count").value(), 1u);
  EXPECT_EQ(registry_.group("logger").counter("metrics_fails").value(), 1u);

  auto drain = [&] {
    std::string text;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(reader.get(), buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
    return text;
  };
  const std::string cut = drain();
  EXPECT_EQ(cut.size(), 65536u);
  EXPECT_EQ(cut.find('\n'), std::string::npos);

  // Room for the next line: it starts on a line of its own and is whole.
  if (::fcntl(reader.get(), F_SETPIPE_SZ, 1 << 20) < 0) GTEST_SKIP() << "cannot grow the pipe";
  g.counter("counter_with_a_long_name_7").add(9);
  auto r2 = (*w)->flush();
  ASSERT_TRUE(r2) << r2.error().message();
  const std::string text = drain();
  ASSERT_GT(text.size(), 2u);
  EXPECT_EQ(text.front(), '\n');
  EXPECT_EQ(text.back(), '\n');
  const json j = json::parse(text.substr(1), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << text.substr(0, 200);
  EXPECT_EQ(j["big"]["counter_with_a_long_name_7"], 9);
  EXPECT_EQ(j["big"]["counter_with_a_long_name_8"], 0);
  EXPECT_EQ(j["logger"]["missed_metrics_count"], 1);
  EXPECT_EQ(j["logger"]["metrics_fails"], 1);
  // And the next one follows directly.
  ASSERT_TRUE((*w)->flush());
  const std::string next = drain();
  ASSERT_FALSE(next.empty());
  EXPECT_EQ(next.front(), '{');
  EXPECT_FALSE(json::parse(next, nullptr, false).is_discarded());
}

}  // namespace
}  // namespace hvz::api
