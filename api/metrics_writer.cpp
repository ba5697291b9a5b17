// MetricsWriter: one JSON line of metric deltas per flush (see the header).
#include "api/metrics_writer.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <utility>

#include <nlohmann/json.hpp>

#include "vmm/core/log.hpp"

namespace hvz::api {
namespace {

metrics::Registry& pick(metrics::Registry* r) {
  return r != nullptr ? *r : metrics::registry();
}

std::uint64_t utc_now_ms() {
  const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count());
}

}  // namespace

Expected<std::unique_ptr<MetricsWriter>> MetricsWriter::create(const std::string& path,
                                                               MetricsWriterOptions options) {
  auto fd = log::open_output_file(path);
  if (!fd) return in_context("metrics: ", fd.error());
  if (options.interval.count() < 0) options.interval = std::chrono::milliseconds(0);
  if (options.write_timeout.count() < 0) options.write_timeout = std::chrono::milliseconds(0);
  std::unique_ptr<MetricsWriter> w(new MetricsWriter(path, std::move(*fd), options));
  if (options.interval.count() > 0) w->thread_ = std::thread([p = w.get()] { p->run(); });
  return w;
}

MetricsWriter::MetricsWriter(std::string path, UniqueFd fd, MetricsWriterOptions options)
    : registry_(pick(options.registry)),
      path_(std::move(path)),
      fd_(std::move(fd)),
      options_(options),
      metrics_fails_(registry_.group("logger").counter("metrics_fails")),
      missed_metrics_count_(registry_.group("logger").counter("missed_metrics_count")) {
  // Firecracker's "logger" group has these four from the first line on.
  registry_.group("logger").counter("missed_log_count");
  registry_.group("logger").counter("log_fails");
}

MetricsWriter::~MetricsWriter() {
  {
    std::lock_guard lock(stop_mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (auto r = flush(); !r) LOG_WARN("final metrics flush: %s", r.error().message().c_str());
}

void MetricsWriter::run() {
  log::set_thread_name("metrics");
  static log::RateLimit failures;
  const auto interval = options_.interval;
  auto next = std::chrono::steady_clock::now() + interval;
  std::unique_lock lock(stop_mutex_);
  for (;;) {
    if (stop_cv_.wait_until(lock, next, [this] { return stop_; })) return;
    lock.unlock();
    if (auto r = flush(); !r && failures.allow()) {
      LOG_WARN("metrics flush: %s", r.error().message().c_str());
    }
    lock.lock();
    next += interval;
    const auto now = std::chrono::steady_clock::now();
    if (next <= now) next = now + interval;  // fell behind (a slow reader): do not burst
  }
}

std::string MetricsWriter::format_line(metrics::Registry& registry,
                                       std::uint64_t utc_timestamp_ms) {
  nlohmann::ordered_json line = nlohmann::ordered_json::object();
  line["utc_timestamp_ms"] = utc_timestamp_ms;
  for (metrics::Group* group : registry.groups()) {
    nlohmann::ordered_json counters = nlohmann::ordered_json::object();
    for (const auto& [name, value] : group->take_deltas()) counters[name] = value;
    line[group->name()] = std::move(counters);
  }
  // replace: a stray non-UTF-8 name must not throw.
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

Expected<void> MetricsWriter::flush() {
  std::lock_guard lock(flush_mutex_);
  // After a line cut short, start on a new line (appending, not insert():
  // gcc 12's -Wrestrict misfires on the latter).
  std::string line = broken_line_ ? "\n" : "";
  line += format_line(registry_, utc_now_ms());
  auto r = write_line(line);
  if (!r) metrics_fails_.add();
  return r;
}

// Called with flush_mutex_ held. A full FIFO gets write_timeout to make
// room; then the (rest of the) line is dropped.
Expected<void> MetricsWriter::write_line(const std::string& line) {
  const auto deadline = std::chrono::steady_clock::now() + options_.write_timeout;
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_.get(), line.data() + done, line.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() > 0) {
        pollfd p{fd_.get(), POLLOUT, 0};
        ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1000)));
        continue;
      }
      missed_metrics_count_.add();
      broken_line_ = done > 0;
      return make_error(Errc::kBusy, "metrics: " + path_ + " is full (no reader keeps up)");
    }
    const int err = n < 0 ? errno : ENOSPC;  // a zero-byte write: no room
    broken_line_ = done > 0;
    return make_error(Errc::kSystem, "metrics: write " + path_, err);
  }
  broken_line_ = false;
  return {};
}

}  // namespace hvz::api
