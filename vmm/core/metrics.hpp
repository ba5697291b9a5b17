// Metrics: named monotonic counters grouped per component ("vcpu",
// "block_rootfs", "net_eth0", "api_server", …), one process-wide registry
// (one hvz process runs one VM). Hot paths hold a Counter& taken once and
// add to it with a relaxed atomic; the writer (api/, which owns the JSON
// shape and the flush schedule) reads snapshots. Like Firecracker, flushed
// lines report what happened since the previous flush (take_deltas()).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hvz::metrics {

class Counter {
 public:
  void add(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }
  // The increase since the previous call (the first call: since creation).
  std::uint64_t take_delta() {
    const std::uint64_t v = value();
    return v - reported_.exchange(v, std::memory_order_relaxed);
  }

 private:
  std::atomic<std::uint64_t> value_{0};
  std::atomic<std::uint64_t> reported_{0};
};

// A counter that also keeps the largest value it was given, for latencies
// and sizes: "<name>_count", "<name>_sum", "<name>_max" in snapshots.
class Summary {
 public:
  void record(std::uint64_t v) {
    count_.add();
    sum_.add(v);
    std::uint64_t m = max_.load(std::memory_order_relaxed);
    while (v > m && !max_.compare_exchange_weak(m, v, std::memory_order_relaxed)) {
    }
  }
  Counter& count() { return count_; }
  Counter& sum() { return sum_; }
  std::uint64_t max() const { return max_.load(std::memory_order_relaxed); }
  std::uint64_t take_max() { return max_.exchange(0, std::memory_order_relaxed); }

 private:
  Counter count_;
  Counter sum_;
  std::atomic<std::uint64_t> max_{0};
};

using Values = std::vector<std::pair<std::string, std::uint64_t>>;

class Group {
 public:
  explicit Group(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  // The counter called `name`, created at zero on first use. References
  // stay valid for the life of the process.
  Counter& counter(std::string_view name) {
    std::lock_guard lock(mutex_);
    for (auto& [n, c] : counters_) {
      if (n == name) return *c;
    }
    counters_.emplace_back(std::string(name), std::make_unique<Counter>());
    return *counters_.back().second;
  }
  Summary& summary(std::string_view name) {
    std::lock_guard lock(mutex_);
    for (auto& [n, s] : summaries_) {
      if (n == name) return *s;
    }
    summaries_.emplace_back(std::string(name), std::make_unique<Summary>());
    return *summaries_.back().second;
  }
  // Current totals, in creation order.
  Values totals() const { return collect(false); }
  // Increases since the previous take_deltas() (max: largest since then).
  Values take_deltas() { return collect(true); }

 private:
  Values collect(bool delta) const {
    std::lock_guard lock(mutex_);
    Values out;
    for (const auto& [n, c] : counters_) out.emplace_back(n, delta ? c->take_delta() : c->value());
    for (const auto& [n, s] : summaries_) {
      out.emplace_back(n + "_count", delta ? s->count().take_delta() : s->count().value());
      out.emplace_back(n + "_sum", delta ? s->sum().take_delta() : s->sum().value());
      out.emplace_back(n + "_max", delta ? s->take_max() : s->max());
    }
    return out;
  }

  std::string name_;
  mutable std::mutex mutex_;
  std::vector<std::pair<std::string, std::unique_ptr<Counter>>> counters_;
  std::vector<std::pair<std::string, std::unique_ptr<Summary>>> summaries_;
};

class Registry {
 public:
  Group& group(std::string_view name) {
    std::lock_guard lock(mutex_);
    for (auto& g : groups_) {
      if (g.name() == name) return g;
    }
    return groups_.emplace_back(std::string(name));
  }
  // Every group, in creation order (stable references).
  std::vector<Group*> groups() {
    std::lock_guard lock(mutex_);
    std::vector<Group*> out;
    for (auto& g : groups_) out.push_back(&g);
    return out;
  }

 private:
  std::mutex mutex_;
  std::deque<Group> groups_;
};

// The process-wide registry.
inline Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace hvz::metrics
