// MetricsWriter: Firecracker's metrics output (PUT /metrics, FlushMetrics).
// Each flush appends ONE line to the metrics file or FIFO, a JSON object
//
//   {"utc_timestamp_ms":1795640400123,"vcpu":{"exit_io_in":12,...},"logger":{...},...}
//
// with every group of the metrics registry and, per counter, its increase
// since the previous flush (Registry::take_deltas(), as Firecracker reports
// them). A thread flushes every `interval` (Firecracker: 60 s); flush() is
// also called for the FlushMetrics action, and once more on destruction.
// Failed writes count in logger.metrics_fails (plus logger.missed_metrics_count
// when the line was dropped because a FIFO was full).
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "vmm/core/error.hpp"
#include "vmm/core/metrics.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::api {

struct MetricsWriterOptions {
  // Periodic flushes; zero: only flush() and the final one.
  std::chrono::milliseconds interval{60'000};
  // How long one flush may wait for a full FIFO to take its line.
  std::chrono::milliseconds write_timeout{100};
  // The registry reported (tests use their own); null: metrics::registry().
  metrics::Registry* registry = nullptr;
};

class MetricsWriter {
 public:
  // Opens `path` (log::open_output_file(): appended, or a FIFO without
  // waiting for a reader) and starts the periodic flushes.
  static Expected<std::unique_ptr<MetricsWriter>> create(const std::string& path,
                                                         MetricsWriterOptions options = {});
  // Stops the periodic thread promptly and writes a last line.
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Writes one line now. Safe from any thread.
  Expected<void> flush();

  const std::string& path() const { return path_; }

  // The line flush() would write, taking the deltas (exposed for tests).
  static std::string format_line(metrics::Registry& registry, std::uint64_t utc_timestamp_ms);

 private:
  MetricsWriter(std::string path, UniqueFd fd, MetricsWriterOptions options);
  void run();
  Expected<void> write_line(const std::string& line);

  metrics::Registry& registry_;
  const std::string path_;
  const UniqueFd fd_;
  const MetricsWriterOptions options_;
  metrics::Counter& metrics_fails_;
  metrics::Counter& missed_metrics_count_;

  std::mutex flush_mutex_;    // one line at a time, in order
  bool broken_line_ = false;  // a line was cut short: start the next one on a new line
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace hvz::api
