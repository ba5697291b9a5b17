// State as data: a queue, each virtio device (block with both engines, net,
// console, rng) and the virtio-mmio transport are driven into an active
// state with requests processed, saved, rebuilt from the saved struct and
// saved again (equal), and the rebuilt device completes the next request
// where the old one stopped. Restores refuse untrusted states that do not
// fit. No KVM.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "devices/tests/test_irq_line.hpp"
#include "virtio/block/block_device.hpp"
#include "virtio/console/console_device.hpp"
#include "virtio/mmio_transport.hpp"
#include "virtio/net/net_device.hpp"
#include "virtio/queue.hpp"
#include "virtio/rng/rng_device.hpp"
#include "virtio/tests/block_support.hpp"
#include "virtio/tests/support.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/metrics.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio::state_test {
namespace {

using testing::EpollLoop;
using testing::FakeInterrupt;
using testing::TestRing;
using namespace std::chrono_literals;

constexpr std::uint16_t kRingSize = 16;

EventFd eventfd() {
  auto e = EventFd::create();
  EXPECT_TRUE(e);
  return std::move(*e);
}

// A bump allocator of guest buffers above 64 KiB.
class Buffers {
 public:
  explicit Buffers(const GuestMemory& mem) : mem_(mem) {}
  Descriptor readable(std::span<const std::byte> data) {
    const GuestAddress a = alloc(data.size());
    EXPECT_TRUE(mem_.write(a, data));
    return {a, static_cast<std::uint32_t>(data.size()), false};
  }
  Descriptor readable(const std::string& s) {
    return readable(std::as_bytes(std::span(s.data(), s.size())));
  }
  Descriptor writable(std::uint32_t len) {
    const GuestAddress a = alloc(len);
    std::vector<std::byte> fill(len, std::byte{0xee});
    EXPECT_TRUE(mem_.write(a, fill));
    return {a, len, true};
  }

 private:
  GuestAddress alloc(std::size_t len) {
    const GuestAddress a(next_);
    next_ += (len + 15) / 16 * 16 + 16;
    return a;
  }
  const GuestMemory& mem_;
  std::uint64_t next_ = 0x10000;
};

// The transport's part of a device-level rebuild: the queue is rebuilt
// from its saved state in place (the device's ActiveQueue keeps pointing
// at it).
void rebuild_queue(TestRing& ring, const QueueState& state, const GuestMemory& mem) {
  ring.queue().reset();
  ASSERT_TRUE(ring.queue().restore(state, mem, true));
  EXPECT_EQ(ring.queue().save(), state);
}

// ---- Queue ----

TEST(QueueState, SavesAndRestoresPositionsAndLayout) {
  const GuestMemory mem = block::make_memory();
  TestRing ring(mem, 0x1000, kRingSize);
  ring.queue().set_features(kFeatureEventIdx);
  Buffers buf(mem);
  ring.post({buf.writable(8)});
  ring.post({buf.writable(8)});
  auto c = ring.queue().pop(mem);
  ASSERT_TRUE(c && *c);
  ASSERT_TRUE(ring.queue().add_used(mem, (*c)->head, 8));
  ASSERT_TRUE(ring.queue().needs_notification(mem));
  const QueueState saved = ring.queue().save();
  EXPECT_EQ(saved.next_avail, 1);
  EXPECT_EQ(saved.next_used, 1);
  EXPECT_TRUE(saved.signalled_used_valid);

  Queue rebuilt(kRingSize);
  ASSERT_TRUE(rebuilt.restore(saved, mem, true));
  EXPECT_EQ(rebuilt.save(), saved);
  // It goes on with the second chain.
  auto next = rebuilt.pop(mem);
  ASSERT_TRUE(next && *next);
  EXPECT_EQ((*next)->head, 1);
}

TEST(QueueState, RestoreRefusesStatesThatDoNotFit) {
  const GuestMemory mem = block::make_memory();
  TestRing ring(mem, 0x1000, kRingSize);
  const QueueState good = ring.queue().save();
  Queue q(kRingSize);
  const QueueState before = q.save();

  QueueState other_max = good;
  other_max.max_size = 32;
  EXPECT_FALSE(q.restore(other_max, mem, false));
  QueueState bad_size = good;
  bad_size.size = 12;
  EXPECT_FALSE(q.restore(bad_size, mem, true));
  EXPECT_TRUE(q.restore(bad_size, mem, false));  // not running: checked at DRIVER_OK
  q.reset();
  QueueState outside = good;
  outside.used_ring = 0x100000 - 8;
  EXPECT_FALSE(q.restore(outside, mem, true));
  QueueState wrapping = good;
  wrapping.desc_table = ~std::uint64_t{0} - 15;
  EXPECT_FALSE(q.restore(wrapping, mem, true));
  QueueState not_ready = good;
  not_ready.ready = false;
  EXPECT_FALSE(q.restore(not_ready, mem, true));
  EXPECT_EQ(q.save(), before);  // nothing changed on error
}

// ---- virtio-blk ----

class BlockStateTest : public ::testing::TestWithParam<block::IoEngine> {
 protected:
  std::unique_ptr<block::BlockDevice> make_device(const std::string& id = "state-1") {
    auto d = block::DiskImage::open(file_.path(), false);
    EXPECT_TRUE(d) << d.error().message();
    block::BlockOptions options;
    options.io_engine = GetParam();
    auto dev = block::BlockDevice::create(std::move(*d), id, metrics_, options);
    EXPECT_TRUE(dev) << dev.error().message();
    return std::move(*dev);
  }
  void activate(block::BlockDevice& dev) {
    ASSERT_TRUE(dev.activate(mem_, {ActiveQueue{&ring_.queue(), notify_.fd()}}, irq_, loop_));
  }
  // Posts a write of `data` at `sector` and waits for `used` entries.
  void write(std::uint64_t sector, const std::vector<std::uint8_t>& data, std::uint16_t used) {
    const block::RequestHeader h{block::kTypeOut, 0, sector};
    ring_.post({buf_.readable(std::as_bytes(std::span(&h, 1))),
                buf_.readable(std::as_bytes(std::span(data))), buf_.writable(1)});
    ASSERT_TRUE(notify_.signal());
    ASSERT_TRUE(loop_.run_until([&] { return ring_.used_idx() == used; }));
  }

  block::TempFile file_{block::kDiskBytes};
  GuestMemory mem_ = block::make_memory();
  Buffers buf_{mem_};
  TestRing ring_{mem_, 0x1000, kRingSize};
  EventFd notify_ = eventfd();
  EpollLoop loop_;
  std::shared_ptr<FakeInterrupt> irq_ = std::make_shared<FakeInterrupt>();
  metrics::Group metrics_{"block_state_test"};
};

INSTANTIATE_TEST_SUITE_P(Engines, BlockStateTest,
                         ::testing::Values(block::IoEngine::kSync, block::IoEngine::kAsync),
                         block::engine_name);

TEST_P(BlockStateTest, RebuiltDeviceSavesTheSameStateAndGoesOn) {
  auto dev = make_device();
  const std::uint64_t acked = kFeatureVersion1 | kFeatureEventIdx | block::kFeatureFlush;
  dev->ack_features(acked);
  activate(*dev);
  write(3, block::pattern(512, 7), 1);
  write(4, block::pattern(1024, 9), 2);

  dev->quiesce();
  const block::BlockDeviceState saved = dev->save();
  const QueueState queue = ring_.queue().save();
  EXPECT_TRUE(saved.activated);
  EXPECT_EQ(saved.acked_features, acked);
  EXPECT_EQ(saved.drive_id, "state-1");
  EXPECT_EQ(saved.disk_path, file_.path());
  EXPECT_EQ(saved.capacity_sectors, block::kDiskSectors);
  dev.reset();  // the old device goes (reset, worker joined)

  auto rebuilt = make_device();
  ASSERT_TRUE(rebuilt->restore(saved));
  rebuild_queue(ring_, queue, mem_);
  activate(*rebuilt);  // the transport's restore does this when it was active
  EXPECT_EQ(rebuilt->save(), saved);

  // The next request completes, the used index goes on from 2.
  const block::RequestHeader h{block::kTypeIn, 0, 3};
  const Descriptor data = buf_.writable(512);
  ring_.post({buf_.readable(std::as_bytes(std::span(&h, 1))), data, buf_.writable(1)});
  ASSERT_TRUE(notify_.signal());
  ASSERT_TRUE(loop_.run_until([&] { return ring_.used_idx() == 3; }));
  EXPECT_EQ(block::read_guest(mem_, data.addr, 512), block::pattern(512, 7));
  EXPECT_EQ(irq_->needs_reset.load(), 0);
  rebuilt->reset();
}

TEST_P(BlockStateTest, RestoreRefusesStatesThatDoNotFit) {
  auto dev = make_device();
  dev->ack_features(kFeatureVersion1);
  const block::BlockDeviceState good = dev->save();

  auto other = make_device();
  block::BlockDeviceState s = good;
  s.version = 99;
  EXPECT_FALSE(other->restore(s));
  s = good;
  s.drive_id = "someone-else";
  EXPECT_FALSE(other->restore(s));
  s = good;
  s.capacity_sectors += 1;
  EXPECT_FALSE(other->restore(s));
  s = good;
  s.read_only = true;
  EXPECT_FALSE(other->restore(s));
  s = good;
  s.acked_features |= 1ull << 40;  // never offered
  EXPECT_FALSE(other->restore(s));
  EXPECT_EQ(other->save().acked_features, 0u);  // nothing changed
  // An active device is not restored over.
  other->ack_features(kFeatureVersion1);
  activate(*other);
  EXPECT_FALSE(other->restore(good));
  other->reset();
}

// ---- virtio-rng ----

TEST(RngState, RebuiltDeviceSavesTheSameStateAndGoesOn) {
  const GuestMemory mem = block::make_memory();
  Buffers buf(mem);
  TestRing ring(mem, 0x1000, kRingSize);
  EventFd notify = eventfd();
  EpollLoop loop;
  auto irq = std::make_shared<FakeInterrupt>();
  metrics::Group group("rng_state_test");
  auto dev = std::make_unique<rng::RngDevice>(group);
  dev->ack_features(rng::RngDevice::kFeatures);
  ASSERT_TRUE(dev->activate(mem, {ActiveQueue{&ring.queue(), notify.fd()}}, irq, loop));
  ring.post({buf.writable(32)});
  ring.post({buf.writable(32)});
  ASSERT_TRUE(notify.signal());
  ASSERT_TRUE(loop.run_until([&] { return ring.used_idx() == 2; }));

  const rng::RngDeviceState saved = dev->save();
  const QueueState queue = ring.queue().save();
  EXPECT_TRUE(saved.activated);
  dev.reset();

  auto rebuilt = std::make_unique<rng::RngDevice>(group);
  rng::RngDeviceState bad = saved;
  bad.acked_features |= 1;  // never offered
  EXPECT_FALSE(rebuilt->restore(bad));
  bad = saved;
  bad.version = 2;
  EXPECT_FALSE(rebuilt->restore(bad));
  ASSERT_TRUE(rebuilt->restore(saved));
  rebuild_queue(ring, queue, mem);
  ASSERT_TRUE(rebuilt->activate(mem, {ActiveQueue{&ring.queue(), notify.fd()}}, irq, loop));
  EXPECT_EQ(rebuilt->save(), saved);
  ring.post({buf.writable(16)});
  ASSERT_TRUE(notify.signal());
  ASSERT_TRUE(loop.run_until([&] { return ring.used_idx() == 3; }));
  EXPECT_EQ(ring.used(2).second, 16u);
  rebuilt->reset();
}

// ---- virtio-net ----

struct Pair {
  UniqueFd device;
  UniqueFd peer;
};

Pair socket_pair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

TEST(NetState, RebuiltDeviceSavesTheSameStateAndGoesOn) {
  const GuestMemory mem = block::make_memory();
  Buffers buf(mem);
  TestRing rx(mem, 0x1000, kRingSize);
  TestRing tx(mem, 0x2000, kRingSize);
  EventFd rx_notify = eventfd();
  EventFd tx_notify = eventfd();
  EpollLoop loop;
  auto irq = std::make_shared<FakeInterrupt>();
  metrics::Group group("net_state_test");
  constexpr net::MacAddress kMac{0x02, 0, 0, 0x12, 0x34, 0x56};
  auto queues = [&] {
    return std::vector<ActiveQueue>{ActiveQueue{&rx.queue(), rx_notify.fd()},
                                    ActiveQueue{&tx.queue(), tx_notify.fd()}};
  };
  // Sends one frame "frame-<n>" through TX and checks the peer got it.
  auto send = [&](int peer, int n) {
    std::string frame(net::kVnetHdrSize, '\0');
    frame += "frame-" + std::to_string(n) + std::string(60, 'x');
    tx.post({buf.readable(frame)});
    ASSERT_TRUE(tx_notify.signal());
    ASSERT_TRUE(loop.run_until([&] { return tx.used_idx() == n; }));
    std::array<char, 256> got{};
    const ssize_t len = ::recv(peer, got.data(), got.size(), MSG_DONTWAIT);
    // The peer stands for the TAP: it gets the vnet header too.
    ASSERT_EQ(len, static_cast<ssize_t>(frame.size()));
    EXPECT_EQ(std::string(got.data() + net::kVnetHdrSize, 7), "frame-" + std::to_string(n));
  };

  Pair p1 = socket_pair();
  auto dev =
      std::make_unique<net::NetDevice>(net::Tap::from_fd(std::move(p1.device)), kMac, "st0", group);
  const std::uint64_t acked = kFeatureVersion1 | kFeatureEventIdx | net::kFeatureMac;
  dev->ack_features(acked);
  ASSERT_TRUE(dev->activate(mem, queues(), irq, loop));
  rx.post({buf.writable(2048)});
  send(p1.peer.get(), 1);
  send(p1.peer.get(), 2);

  const net::NetDeviceState saved = dev->save();
  const QueueState rx_state = rx.queue().save();
  const QueueState tx_state = tx.queue().save();
  EXPECT_TRUE(saved.activated);
  EXPECT_EQ(saved.mac, kMac);
  EXPECT_EQ(saved.acked_features, acked);
  dev.reset();

  // The same interface on a new backend (a restored VM opens its TAP anew).
  Pair p2 = socket_pair();
  auto rebuilt =
      std::make_unique<net::NetDevice>(net::Tap::from_fd(std::move(p2.device)), kMac, "st0", group);
  net::NetDeviceState bad = saved;
  bad.mac = std::nullopt;
  EXPECT_FALSE(rebuilt->restore(bad));
  bad = saved;
  bad.iface_id = "other";
  EXPECT_FALSE(rebuilt->restore(bad));
  bad = saved;
  bad.acked_features |= 1ull << 50;
  EXPECT_FALSE(rebuilt->restore(bad));
  ASSERT_TRUE(rebuilt->restore(saved));
  rebuild_queue(rx, rx_state, mem);
  rebuild_queue(tx, tx_state, mem);
  ASSERT_TRUE(rebuilt->activate(mem, queues(), irq, loop));
  EXPECT_EQ(rebuilt->save(), saved);
  send(p2.peer.get(), 3);
  // RX still has the buffer posted before the save.
  const std::string in = std::string(net::kVnetHdrSize, '\0') + std::string(64, 'r');
  ASSERT_EQ(::send(p2.peer.get(), in.data(), in.size(), 0), static_cast<ssize_t>(in.size()));
  ASSERT_TRUE(loop.run_until([&] { return rx.used_idx() == 1; }));
  EXPECT_EQ(rx.used(0).second, in.size());
  EXPECT_EQ(irq->needs_reset.load(), 0);
  rebuilt->reset();
}

// ---- virtio-console ----

TEST(ConsoleState, RebuiltDeviceSavesTheSameStateAndGoesOn) {
  const GuestMemory mem = block::make_memory();
  Buffers buf(mem);
  TestRing rx(mem, 0x1000, kRingSize);
  TestRing tx(mem, 0x2000, kRingSize);
  EventFd rx_notify = eventfd();
  EventFd tx_notify = eventfd();
  EpollLoop loop;
  auto irq = std::make_shared<FakeInterrupt>();
  metrics::Group group("console_state_test");
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd out_read(out[0]);
  UniqueFd out_write(out[1]);
  auto queues = [&] {
    return std::vector<ActiveQueue>{ActiveQueue{&rx.queue(), rx_notify.fd()},
                                    ActiveQueue{&tx.queue(), tx_notify.fd()}};
  };
  auto output = [&] {
    std::string s;
    char b[256];
    ssize_t n;
    while ((n = ::read(out_read.get(), b, sizeof b)) > 0) s.append(b, static_cast<std::size_t>(n));
    return s;
  };
  auto print = [&](const std::string& text, std::uint16_t used) {
    tx.post({buf.readable(text)});
    ASSERT_TRUE(tx_notify.signal());
    ASSERT_TRUE(loop.run_until([&] { return tx.used_idx() == used; }));
  };

  const console::WindowSize size{100, 30};
  auto dev = std::make_unique<console::ConsoleDevice>(out_write.get(), -1, group, size);
  dev->ack_features(console::ConsoleDevice::kFeatures);
  ASSERT_TRUE(dev->activate(mem, queues(), irq, loop));
  print("hello ", 1);
  print("world", 2);
  EXPECT_EQ(output(), "hello world");

  const console::ConsoleDeviceState saved = dev->save();
  const QueueState rx_state = rx.queue().save();
  const QueueState tx_state = tx.queue().save();
  EXPECT_TRUE(saved.activated);
  dev.reset();

  auto rebuilt = std::make_unique<console::ConsoleDevice>(out_write.get(), -1, group, size);
  console::ConsoleDeviceState bad = saved;
  bad.config[0] ^= 1;  // another window size
  EXPECT_FALSE(rebuilt->restore(bad));
  ASSERT_TRUE(rebuilt->restore(saved));
  rebuild_queue(rx, rx_state, mem);
  rebuild_queue(tx, tx_state, mem);
  ASSERT_TRUE(rebuilt->activate(mem, queues(), irq, loop));
  EXPECT_EQ(rebuilt->save(), saved);
  print("!", 3);
  EXPECT_EQ(output(), "!");
  EXPECT_EQ(irq->needs_reset.load(), 0);
  rebuilt->reset();
}

TEST(ConsoleState, AChainCutByQuiesceResumesWhereItStopped) {
  const GuestMemory mem = block::make_memory();
  Buffers buf(mem);
  TestRing rx(mem, 0x1000, kRingSize);
  TestRing tx(mem, 0x2000, kRingSize);
  EventFd rx_notify = eventfd();
  EventFd tx_notify = eventfd();
  EpollLoop loop;
  auto irq = std::make_shared<FakeInterrupt>();
  metrics::Group group("console_state_test");
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd out_read(out[0]);
  UniqueFd out_write(out[1]);
  ASSERT_GT(::fcntl(out_write.get(), F_SETPIPE_SZ, 4096), 0);
  auto queues = [&] {
    return std::vector<ActiveQueue>{ActiveQueue{&rx.queue(), rx_notify.fd()},
                                    ActiveQueue{&tx.queue(), tx_notify.fd()}};
  };
  std::string got;
  auto drain_output = [&] {
    char b[4096];
    ssize_t n;
    while ((n = ::read(out_read.get(), b, sizeof b)) > 0)
      got.append(b, static_cast<std::size_t>(n));
  };

  std::string text;
  for (int i = 0; text.size() < 20000; ++i) text += "line " + std::to_string(i) + "\n";
  auto dev = std::make_unique<console::ConsoleDevice>(out_write.get(), -1, group);
  dev->ack_features(kFeatureVersion1);
  ASSERT_TRUE(dev->activate(mem, queues(), irq, loop));
  tx.post({buf.readable(text)});
  ASSERT_TRUE(tx_notify.signal());
  // The pipe fills: the chain waits, partly written.
  loop.run_for(50ms);
  ASSERT_EQ(tx.used_idx(), 0);

  dev->quiesce();
  EXPECT_EQ(tx.queue().next_avail(), 0);  // the chain is the driver's again
  const console::ConsoleDeviceState saved = dev->save();
  const QueueState rx_state = rx.queue().save();
  const QueueState tx_state = tx.queue().save();
  drain_output();
  EXPECT_GT(saved.tx_resume_offset, 0u);
  EXPECT_EQ(saved.tx_resume_offset, got.size());
  dev.reset();

  auto rebuilt = std::make_unique<console::ConsoleDevice>(out_write.get(), -1, group);
  ASSERT_TRUE(rebuilt->restore(saved));
  rebuild_queue(rx, rx_state, mem);
  rebuild_queue(tx, tx_state, mem);
  ASSERT_TRUE(rebuilt->activate(mem, queues(), irq, loop));
  EXPECT_EQ(rebuilt->save(), saved);
  ASSERT_TRUE(loop.run_until([&] {
    drain_output();
    return tx.used_idx() == 1;
  }));
  drain_output();
  EXPECT_EQ(got, text);  // nothing lost, nothing written twice
  rebuilt->reset();
}

// ---- virtio-mmio transport (with the rng device behind it) ----

class TransportStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    device_ = std::make_shared<rng::RngDevice>(group_);
    auto t = MmioTransport::create(device_, mem_, loop_, irq_);
    ASSERT_TRUE(t) << t.error().message();
    transport_ = *t;
  }
  void TearDown() override {
    if (transport_) transport_->shutdown();
  }
  static void wr(MmioTransport& t, std::uint64_t offset, std::uint32_t v) {
    std::array<std::uint8_t, 4> b;
    std::memcpy(b.data(), &v, 4);
    t.write(offset, b);
  }
  // The driver's initialisation, up to DRIVER_OK, with the ring at 0x1000.
  void bring_up(MmioTransport& t) {
    wr(t, mmio_reg::kStatus, kStatusAcknowledge);
    wr(t, mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver);
    wr(t, mmio_reg::kDriverFeaturesSel, 1);
    wr(t, mmio_reg::kDriverFeatures, 1);  // VERSION_1
    wr(t, mmio_reg::kDriverFeaturesSel, 0);
    wr(t, mmio_reg::kDriverFeatures, static_cast<std::uint32_t>(kFeatureEventIdx));
    wr(t, mmio_reg::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    wr(t, mmio_reg::kQueueSel, 0);
    wr(t, mmio_reg::kQueueNum, kRingSize);
    wr(t, mmio_reg::kQueueDescLow, 0x1000);
    wr(t, mmio_reg::kQueueDriverLow, 0x1400);
    wr(t, mmio_reg::kQueueDeviceLow, 0x1800);
    wr(t, mmio_reg::kQueueReady, 1);
    wr(t, mmio_reg::kStatus,
       kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_TRUE(t.activated());
  }
  void request(std::uint16_t used) {
    ring_.post({buf_.writable(24)});
    wr(*transport_, mmio_reg::kQueueNotify, 0);
    ASSERT_TRUE(loop_.run_until([&] { return ring_.used_idx() == used; }));
  }
  // A new device and transport (as a restored VM builds them), the old
  // ones shut down first.
  void rebuild() {
    transport_->shutdown();
    transport_.reset();
    device_ = std::make_shared<rng::RngDevice>(group_);
    auto t = MmioTransport::create(device_, mem_, loop_, irq_);
    ASSERT_TRUE(t) << t.error().message();
    transport_ = *t;
  }

  GuestMemory mem_ = block::make_memory();
  Buffers buf_{mem_};
  // The driver's view of the ring the transport's queue 0 points at.
  TestRing ring_{mem_, 0x1000, kRingSize};
  EpollLoop loop_;
  std::shared_ptr<devices::testing::CountingIrqLine> irq_ =
      std::make_shared<devices::testing::CountingIrqLine>();
  metrics::Group group_{"transport_state_test"};
  std::shared_ptr<rng::RngDevice> device_;
  std::shared_ptr<MmioTransport> transport_;
};

TEST_F(TransportStateTest, RebuiltTransportSavesTheSameStateAndGoesOn) {
  bring_up(*transport_);
  request(1);
  request(2);
  transport_->quiesce();
  const MmioTransportState saved = transport_->save();
  const rng::RngDeviceState dev_saved = device_->save();
  EXPECT_TRUE(saved.activated);
  EXPECT_EQ(saved.status, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_EQ(saved.driver_features, kFeatureVersion1 | kFeatureEventIdx);
  EXPECT_EQ(saved.interrupt_status, kInterruptUsedBuffer);
  ASSERT_EQ(saved.queues.size(), 1u);
  EXPECT_EQ(saved.queues[0].next_used, 2);
  EXPECT_EQ(saved.queues[0].desc_table, 0x1000u);

  rebuild();
  ASSERT_TRUE(device_->restore(dev_saved));
  ASSERT_TRUE(transport_->restore(saved));
  EXPECT_TRUE(transport_->activated());
  EXPECT_EQ(transport_->save(), saved);
  EXPECT_EQ(device_->save(), dev_saved);
  request(3);
  EXPECT_EQ(transport_->save().queues[0].next_used, 3);
}

TEST_F(TransportStateTest, RestoreRefusesStatesThatDoNotFit) {
  bring_up(*transport_);
  request(1);
  const MmioTransportState good = transport_->save();
  rebuild();
  auto refused = [&](const MmioTransportState& s) {
    const bool ok = transport_->restore(s).has_value();
    // Refused: back at the reset state, ready for another try.
    EXPECT_EQ(transport_->status(), 0u);
    EXPECT_FALSE(transport_->activated());
    return !ok;
  };
  MmioTransportState s = good;
  s.version = 7;
  EXPECT_TRUE(refused(s));
  s = good;
  s.device_type = kDeviceTypeBlock;
  EXPECT_TRUE(refused(s));
  s = good;
  s.queues.push_back(s.queues[0]);
  EXPECT_TRUE(refused(s));
  s = good;
  s.status = kStatusAcknowledge | kStatusDriverOk;  // skips steps
  EXPECT_TRUE(refused(s));
  s = good;
  s.driver_features |= 1ull << 3;  // never offered, yet FEATURES_OK
  EXPECT_TRUE(refused(s));
  s = good;
  s.status = kStatusAcknowledge | kStatusDriver;  // activated without DRIVER_OK
  EXPECT_TRUE(refused(s));
  s = good;
  s.queues[0].size = 3;
  EXPECT_TRUE(refused(s));
  s = good;
  s.queues[0].avail_ring = 0x100000 - 4;  // outside RAM
  EXPECT_TRUE(refused(s));
  s = good;
  s.queues[0].max_size = 1024;
  EXPECT_TRUE(refused(s));
  EXPECT_EQ(loop_.registered(), 0u);  // no activation leaked a registration

  // A transport in use is not restored over.
  ASSERT_TRUE(transport_->restore(good));
  EXPECT_FALSE(transport_->restore(good));
  // An inactive state (mid-initialisation) is restored without activating.
  rebuild();
  MmioTransportState mid = good;
  mid.status = kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk;
  mid.activated = false;
  ASSERT_TRUE(transport_->restore(mid));
  EXPECT_FALSE(transport_->activated());
  EXPECT_EQ(transport_->save(), mid);
}

}  // namespace
}  // namespace hvz::virtio::state_test
