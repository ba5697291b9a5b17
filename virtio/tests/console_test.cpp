// virtio-console: features and config, and the device moving bytes between
// hand-built virtqueues and pipes/sockets through a small epoll EventLoop.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "virtio/console/console_device.hpp"
#include "virtio/queue.hpp"
#include "virtio/tests/support.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/metrics.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio::console {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kMemSize = 4ull << 20;
constexpr std::uint16_t kRingSize = 64;
constexpr std::uint64_t kRingStride = 0x1000;  // desc table, avail and used rings 4 KiB apart
constexpr std::uint64_t kBufferBase = 0x10000;

GuestMemory make_memory() {
  auto m = GuestMemory::create({{GuestAddress(0), kMemSize}});
  EXPECT_TRUE(m) << m.error().message();
  return std::move(*m);
}

using testing::EpollLoop;
using testing::FakeInterrupt;
using testing::TestRing;

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Pipe make_pipe(int flags = O_CLOEXEC) {
  int fds[2];
  EXPECT_EQ(::pipe2(fds, flags), 0);
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::string bytes_of(const GuestMemory& mem, GuestAddress a, std::size_t len) {
  std::string s(len, '\0');
  EXPECT_TRUE(mem.read(a, std::as_writable_bytes(std::span(s.data(), s.size()))));
  return s;
}

// Everything currently readable from a non-blocking fd.
std::string drain(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

class ConsoleDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = make_pipe(O_CLOEXEC | O_NONBLOCK);
    in_ = make_pipe(O_CLOEXEC | O_NONBLOCK);
    for (auto* n : {&rx_notify_, &tx_notify_}) {
      auto e = EventFd::create();
      ASSERT_TRUE(e);
      n->emplace(std::move(*e));
    }
  }
  // A guest buffer holding `data` (or `len` bytes of 0xee when writable).
  Descriptor readable(const std::string& data) {
    const GuestAddress a = alloc(data.size());
    EXPECT_TRUE(mem_.write(a, std::as_bytes(std::span(data.data(), data.size()))));
    return {a, static_cast<std::uint32_t>(data.size()), false};
  }
  Descriptor writable(std::uint32_t len) {
    const GuestAddress a = alloc(len);
    std::vector<std::byte> fill(len, std::byte{0xee});
    EXPECT_TRUE(mem_.write(a, fill));
    return {a, len, true};
  }
  GuestAddress alloc(std::size_t len) {
    const GuestAddress a(next_);
    next_ += (len + 15) / 16 * 16 + 16;
    EXPECT_LE(next_, kMemSize);
    return a;
  }
  void create(int out, int in) { device_.emplace(out, in, metrics::registry().group("console")); }
  void activate(std::uint64_t acked = kFeatureVersion1) {
    device_->ack_features(acked);
    ASSERT_TRUE(device_->activate(
        mem_,
        {ActiveQueue{&rx_.queue(), rx_notify_->fd()}, ActiveQueue{&tx_.queue(), tx_notify_->fd()}},
        irq_, loop_));
  }
  void notify_tx() { ASSERT_TRUE(tx_notify_->signal()); }
  void notify_rx() { ASSERT_TRUE(rx_notify_->signal()); }

  // Declared before the device so they outlive it.
  Pipe out_;
  Pipe in_;
  GuestMemory mem_ = make_memory();
  TestRing rx_{mem_, 0x1000, kRingSize, kRingStride};
  TestRing tx_{mem_, 0x4000, kRingSize, kRingStride};
  std::uint64_t next_ = kBufferBase;
  EpollLoop loop_;
  std::shared_ptr<FakeInterrupt> irq_ = std::make_shared<FakeInterrupt>();
  std::optional<EventFd> rx_notify_;
  std::optional<EventFd> tx_notify_;
  std::optional<ConsoleDevice> device_;
};

TEST(ConsoleDevice, OffersFeaturesQueuesAndWindowSize) {
  ConsoleDevice dev(1, -1, metrics::registry().group("console"));
  EXPECT_EQ(dev.device_type(), 3u);
  EXPECT_TRUE(dev.features() & kFeatureVersion1);
  EXPECT_TRUE(dev.features() & kFeatureEventIdx);
  EXPECT_TRUE(dev.features() & kFeatureSize);
  EXPECT_FALSE(dev.features() & kFeatureMultiport);
  EXPECT_FALSE(dev.features() & kFeatureEmergWrite);
  EXPECT_EQ(dev.queue_max_sizes(), (std::vector<std::uint16_t>{256, 256}));

  std::array<std::uint8_t, 4> raw{};
  dev.read_config(kConfigCols, raw);
  EXPECT_EQ(raw[0] | (raw[1] << 8), 80);
  EXPECT_EQ(raw[2] | (raw[3] << 8), 25);
  // Writes are ignored; max_nr_ports and reads past the end are zero.
  const std::array<std::uint8_t, 4> junk{1, 2, 3, 4};
  dev.write_config(0, junk);
  dev.read_config(0, raw);
  EXPECT_EQ(raw, (std::array<std::uint8_t, 4>{80, 0, 25, 0}));
  std::array<std::uint8_t, 4> far{9, 9, 9, 9};
  dev.read_config(4, far);
  EXPECT_EQ(far, (std::array<std::uint8_t, 4>{}));
  dev.read_config(kConfigSize - 1, far);
  EXPECT_EQ(far, (std::array<std::uint8_t, 4>{}));
  dev.read_config(~std::uint64_t{0} - 1, far);
  EXPECT_EQ(far, (std::array<std::uint8_t, 4>{}));

  ConsoleDevice wide(1, -1, metrics::registry().group("console"), WindowSize{132, 50});
  wide.read_config(0, raw);
  EXPECT_EQ(raw, (std::array<std::uint8_t, 4>{132, 0, 50, 0}));
}

class ConsoleEventIdxTest : public ConsoleDeviceTest, public ::testing::WithParamInterface<bool> {
 protected:
  std::uint64_t acked() const { return kFeatureVersion1 | (GetParam() ? kFeatureEventIdx : 0); }
};

TEST_P(ConsoleEventIdxTest, TransmitsChainsInOrder) {
  create(out_.write.get(), -1);
  activate(acked());
  tx_.post({readable("hel"), readable("lo, "), readable("")});
  tx_.post({readable("host")});
  notify_tx();
  ASSERT_TRUE(loop_.run_until([&] { return tx_.used_idx() == 2; }));
  // A later batch, posted after the device went idle, follows.
  tx_.post({readable("! "), readable("bye")});
  notify_tx();
  ASSERT_TRUE(loop_.run_until([&] { return tx_.used_idx() == 3; }));

  EXPECT_EQ(drain(out_.read.get()), "hello, host! bye");
  EXPECT_EQ(tx_.used(0), (std::pair<std::uint32_t, std::uint32_t>{0, 0}));
  EXPECT_EQ(tx_.used(1), (std::pair<std::uint32_t, std::uint32_t>{3, 0}));
  EXPECT_EQ(tx_.used(2), (std::pair<std::uint32_t, std::uint32_t>{4, 0}));
  EXPECT_GE(irq_->used.load(), 1);
  EXPECT_EQ(irq_->needs_reset.load(), 0);
  EXPECT_EQ(device_->counters().tx_bytes, 16u);
  EXPECT_EQ(device_->counters().rx_bytes, 0u);
}

TEST_P(ConsoleEventIdxTest, ReceivesInputIntoRxBuffers) {
  create(out_.write.get(), in_.read.get());
  const Descriptor a = writable(8);
  const Descriptor b = writable(100);
  rx_.post({a, b});
  activate(acked());
  notify_rx();
  const std::string msg = "hello, guest!";
  ASSERT_EQ(::write(in_.write.get(), msg.data(), msg.size()), static_cast<ssize_t>(msg.size()));
  ASSERT_TRUE(loop_.run_until([&] { return rx_.used_idx() == 1; }));
  EXPECT_EQ(rx_.used(0), (std::pair<std::uint32_t, std::uint32_t>{0, 13}));
  EXPECT_EQ(bytes_of(mem_, a.addr, 8), "hello, g");
  EXPECT_EQ(bytes_of(mem_, b.addr, 6), "uest!\xee");
  EXPECT_GE(irq_->used.load(), 1);
  EXPECT_EQ(device_->counters().rx_bytes, 13u);

  // More input than one small buffer: it is split over the next buffers.
  rx_.post({writable(4)});
  rx_.post({writable(4)});
  notify_rx();
  ASSERT_EQ(::write(in_.write.get(), "abcdef", 6), 6);
  ASSERT_TRUE(loop_.run_until([&] { return rx_.used_idx() == 3; }));
  EXPECT_EQ(rx_.used(1).second, 4u);
  EXPECT_EQ(rx_.used(2).second, 2u);
  EXPECT_EQ(device_->counters().rx_bytes, 19u);
  EXPECT_EQ(irq_->needs_reset.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(EventIdx, ConsoleEventIdxTest, ::testing::Bool());

TEST_F(ConsoleDeviceTest, CountsBytesInTheConsoleMetricsGroup) {
  auto& group = metrics::registry().group("console");
  const std::uint64_t in_before = group.counter("in_bytes").value();
  const std::uint64_t out_before = group.counter("out_bytes").value();
  create(out_.write.get(), in_.read.get());
  rx_.post({writable(64)});
  activate();
  tx_.post({readable("twelve bytes")});
  notify_tx();
  ASSERT_EQ(::write(in_.write.get(), "seven!!", 7), 7);
  ASSERT_TRUE(loop_.run_until([&] { return tx_.used_idx() == 1 && rx_.used_idx() == 1; }));
  EXPECT_EQ(group.counter("out_bytes").value() - out_before, 12u);
  EXPECT_EQ(group.counter("in_bytes").value() - in_before, 7u);
}

TEST_F(ConsoleDeviceTest, InputWaitsForRxBuffersThenFlows) {
  create(out_.write.get(), in_.read.get());
  activate(kFeatureVersion1 | kFeatureEventIdx);
  ASSERT_EQ(::write(in_.write.get(), "typed", 5), 5);
  // With no RX buffer the device stops polling the input rather than spin.
  loop_.run_for(100ms);
  EXPECT_FALSE(loop_.registered(in_.read.get()));
  EXPECT_LE(loop_.dispatches(in_.read.get()), 2);
  EXPECT_EQ(rx_.used_idx(), 0);

  const Descriptor buf = writable(64);
  rx_.post({buf});
  notify_rx();
  ASSERT_TRUE(loop_.run_until([&] { return rx_.used_idx() == 1; }));
  EXPECT_EQ(rx_.used(0).second, 5u);
  EXPECT_EQ(bytes_of(mem_, buf.addr, 5), "typed");
}

TEST_F(ConsoleDeviceTest, EofOnInputStopsPollingWithoutSpinning) {
  create(out_.write.get(), in_.read.get());
  const Descriptor buf = writable(64);
  rx_.post({buf});
  activate();
  ASSERT_EQ(::write(in_.write.get(), "last", 4), 4);
  in_.write.reset();
  ASSERT_TRUE(loop_.run_until([&] { return rx_.used_idx() == 1; }));
  EXPECT_EQ(bytes_of(mem_, buf.addr, 4), "last");
  rx_.post({writable(64)});
  notify_rx();
  loop_.run_for(100ms);
  // EOF: the input is dropped from the loop, the new buffer stays unused.
  EXPECT_FALSE(loop_.registered(in_.read.get()));
  EXPECT_LE(loop_.dispatches(in_.read.get()), 3);
  EXPECT_EQ(rx_.used_idx(), 1);
  // A later RX notify does not bring the closed input back.
  notify_rx();
  loop_.run_for(20ms);
  EXPECT_FALSE(loop_.registered(in_.read.get()));

  // Output still works.
  tx_.post({readable("still here")});
  notify_tx();
  ASSERT_TRUE(loop_.run_until([&] { return tx_.used_idx() == 1; }));
  EXPECT_EQ(drain(out_.read.get()), "still here");
}

TEST_F(ConsoleDeviceTest, MalformedTransmitChainNeedsResetOnce) {
  create(out_.write.get(), -1);
  activate();
  // `next` outside the ring.
  const Descriptor d = readable("never");
  tx_.put_desc(0, d.addr.value(), d.len, kDescFlagNext, 200);
  tx_.publish(0);
  notify_tx();
  ASSERT_TRUE(loop_.run_until([&] { return irq_->needs_reset.load() > 0; }));
  tx_.post({readable("more")});
  notify_tx();
  loop_.run_for(50ms);
  EXPECT_EQ(irq_->needs_reset.load(), 1);
  EXPECT_EQ(tx_.used_idx(), 0);
  EXPECT_EQ(drain(out_.read.get()), "");
}

TEST_F(ConsoleDeviceTest, RxBufferOutsideMemoryNeedsResetAndStopsInput) {
  create(out_.write.get(), in_.read.get());
  rx_.post({Descriptor{GuestAddress(kMemSize - 8), 64, true}});
  activate();
  ASSERT_EQ(::write(in_.write.get(), "x", 1), 1);
  ASSERT_TRUE(loop_.run_until([&] { return irq_->needs_reset.load() > 0; }));
  loop_.run_for(50ms);
  EXPECT_EQ(irq_->needs_reset.load(), 1);
  EXPECT_FALSE(loop_.registered(in_.read.get()));
  EXPECT_EQ(rx_.used_idx(), 0);
}

TEST_F(ConsoleDeviceTest, LargeOutputThroughASmallPipeArrivesComplete) {
  // A small pipe makes the device hit EAGAIN and wait for writability.
  ASSERT_GT(::fcntl(out_.write.get(), F_SETPIPE_SZ, 4096), 0);
  create(out_.write.get(), -1);
  activate(kFeatureVersion1 | kFeatureEventIdx);

  constexpr std::size_t kTotal = 1 << 20;
  constexpr std::size_t kChains = 16;
  std::string data(kTotal, '\0');
  for (std::size_t i = 0; i < kTotal; ++i) {
    data[i] = static_cast<char>((i * 131 + (i >> 11)) & 0xff);
  }
  const std::size_t per_chain = kTotal / kChains;
  for (std::size_t c = 0; c < kChains; ++c) {
    const std::string part = data.substr(c * per_chain, per_chain);
    // Three uneven descriptors per chain.
    tx_.post({readable(part.substr(0, 1000)), readable(part.substr(1000, 30000)),
              readable(part.substr(31000))});
  }
  notify_tx();
  // Nobody reads yet: the device must fill the pipe, hit EAGAIN and start
  // polling its output for writability. (Reading from the start made this
  // depend on how fast the reader thread ran.)
  ASSERT_TRUE(loop_.run_until([&] { return loop_.registered(out_.write.get()); }, 30s));
  std::string received;
  std::thread reader([&] {
    // Blocking reads until the device's end is closed.
    const int fd = out_.read.get();
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    char buf[8192];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) received.append(buf, static_cast<std::size_t>(n));
  });
  const bool done = loop_.run_until([&] { return tx_.used_idx() == kChains; }, 30s);
  const int out_fd = out_.write.get();
  device_->reset();
  out_.write.reset();
  reader.join();
  ASSERT_TRUE(done);
  EXPECT_EQ(received.size(), kTotal);
  EXPECT_TRUE(received == data);
  // The pipe filled up: the device waited for writability in between.
  EXPECT_GT(loop_.dispatches(out_fd), 0);
  EXPECT_EQ(device_->counters().tx_bytes, kTotal);
  EXPECT_EQ(irq_->needs_reset.load(), 0);
}

TEST_F(ConsoleDeviceTest, OneBlockingSocketCarriesBothDirections) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd vmm_end(sv[0]);
  UniqueFd peer(sv[1]);
  create(vmm_end.get(), vmm_end.get());
  const Descriptor buf = writable(32);
  rx_.post({buf});
  activate(kFeatureVersion1 | kFeatureEventIdx);

  tx_.post({readable("to peer")});
  notify_tx();
  ASSERT_TRUE(loop_.run_until([&] { return tx_.used_idx() == 1; }));
  char got[16] = {};
  ASSERT_EQ(::recv(peer.get(), got, sizeof got, MSG_DONTWAIT), 7);
  EXPECT_EQ(std::string(got, 7), "to peer");

  ASSERT_EQ(::send(peer.get(), "to guest", 8, 0), 8);
  ASSERT_TRUE(loop_.run_until([&] { return rx_.used_idx() == 1; }));
  EXPECT_EQ(rx_.used(0).second, 8u);
  EXPECT_EQ(bytes_of(mem_, buf.addr, 8), "to guest");

  // The peer hanging up ends the input; the loop does not spin on it.
  peer.reset();
  rx_.post({writable(32)});
  notify_rx();
  loop_.run_for(100ms);
  EXPECT_FALSE(loop_.registered(vmm_end.get()));
  EXPECT_LE(loop_.dispatches(vmm_end.get()), 4);
  // Output to the closed peer is counted as lost, not a SIGPIPE or a hang.
  tx_.post({readable("lost")});
  notify_tx();
  ASSERT_TRUE(loop_.run_until([&] { return tx_.used_idx() == 2; }));
  EXPECT_EQ(device_->counters().tx_dropped, 4u);
  EXPECT_EQ(irq_->needs_reset.load(), 0);
  device_.reset();  // before the socket closes
}

// A hostile driver that re-posts every output chain as soon as it is used,
// so the transmit ring never runs empty, while a slow reader makes each
// chain take about a millisecond: reset() (which waits for the running loop
// callback) must still return promptly, because the device handles a
// bounded batch per callback and comes back through its notify fd.
TEST_F(ConsoleDeviceTest, ResetReturnsWhileTheDriverRefillsTheRingForever) {
  Pipe slow = make_pipe(O_CLOEXEC);  // blocking: the device waits in writev
  create(slow.write.get(), -1);
  activate();
  std::atomic<bool> stop{false};
  std::atomic<bool> stop_reading{false};
  std::thread reader([&] {
    char buf[4096];
    while (!stop_reading.load()) {
      [[maybe_unused]] auto n = ::read(slow.read.get(), buf, sizeof buf);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  const Descriptor chunk = readable(std::string(4096, 'x'));
  for (std::uint16_t i = 0; i < kRingSize; ++i) {
    tx_.put_desc(i, chunk.addr.value(), chunk.len, 0, 0);
  }
  std::thread driver([&] {
    std::uint16_t published = 0;
    while (!stop.load()) {
      bool posted = false;
      while (static_cast<std::uint16_t>(published - tx_.used_idx()) < kRingSize) {
        tx_.publish(static_cast<std::uint16_t>(published % kRingSize));
        ++published;
        posted = true;
      }
      if (posted) (void)tx_notify_->signal();
    }
  });
  std::atomic<bool> loop_done{false};
  std::thread looper([&] { loop_.run_until([&] { return loop_done.load(); }, 60s); });
  while (tx_.used_idx() < 2 * kRingSize) std::this_thread::sleep_for(1ms);
  // Before the fix reset() would wait for an empty ring forever: the
  // watchdog stops the driver after 10 s so the test ends either way.
  std::thread watchdog([&] {
    for (int i = 0; i < 1000 && !stop.load(); ++i) std::this_thread::sleep_for(10ms);
    stop.store(true);
  });
  const auto start = std::chrono::steady_clock::now();
  device_->reset();
  const auto took = std::chrono::steady_clock::now() - start;
  stop.store(true);
  loop_done.store(true);
  driver.join();
  watchdog.join();
  looper.join();
  stop_reading.store(true);
  slow.write.reset();  // the reader's last read sees EOF
  reader.join();
  EXPECT_LT(took, 1s) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms";
}

TEST_F(ConsoleDeviceTest, ResetUnregistersEverythingAndCanReactivate) {
  create(out_.write.get(), in_.read.get());
  activate();
  loop_.run_for(10ms);
  EXPECT_TRUE(loop_.registered(in_.read.get()));
  EXPECT_EQ(loop_.registered(), 3u);  // two notify fds and the input
  device_->reset();
  EXPECT_EQ(loop_.registered(), 0u);
  // A pending notify after reset does nothing (nothing is registered).
  notify_tx();
  loop_.run_for(10ms);

  rx_.queue().reset();
  tx_.queue().reset();
  TestRing rx2(mem_, 0x1000, kRingSize, kRingStride);
  TestRing tx2(mem_, 0x4000, kRingSize, kRingStride);
  (void)tx_notify_->consume();
  // The driver re-initialises its rings before activating again.
  ASSERT_TRUE(mem_.write_obj<std::uint16_t>(GuestAddress(0x4000 + 0x2000 + 2), 0));
  device_->ack_features(kFeatureVersion1);
  ASSERT_TRUE(device_->activate(
      mem_,
      {ActiveQueue{&rx2.queue(), rx_notify_->fd()}, ActiveQueue{&tx2.queue(), tx_notify_->fd()}},
      irq_, loop_));
  tx2.post({readable("again")});
  notify_tx();
  ASSERT_TRUE(loop_.run_until([&] { return tx2.used_idx() == 1; }));
  EXPECT_EQ(drain(out_.read.get()), "again");
}

TEST_F(ConsoleDeviceTest, WithoutInputOnlyNotifyFdsArePolled) {
  create(out_.write.get(), -1);
  activate();
  loop_.run_for(10ms);
  EXPECT_EQ(loop_.registered(), 2u);
  rx_.post({writable(16)});
  notify_rx();
  loop_.run_for(20ms);
  EXPECT_EQ(rx_.used_idx(), 0);
  EXPECT_EQ(loop_.registered(), 2u);
}

}  // namespace
}  // namespace hvz::virtio::console
