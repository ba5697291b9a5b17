// virtio-net: the Tap over a SOCK_SEQPACKET socketpair (and a real TAP in a
// private network namespace when allowed), and the device moving frames
// between hand-built RX/TX virtqueues and the Tap through a small epoll
// EventLoop.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "virtio/net/net_device.hpp"
#include "virtio/net/tap.hpp"
#include "virtio/queue.hpp"
#include "virtio/tests/support.hpp"
#include "vmm/core/event_fd.hpp"
#include "vmm/core/guest_memory.hpp"
#include "vmm/core/metrics.hpp"
#include "vmm/core/unique_fd.hpp"

namespace hvz::virtio::net {
namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes pattern(std::size_t len, std::uint8_t seed) {
  Bytes v(len);
  for (std::size_t i = 0; i < len; ++i) v[i] = static_cast<std::uint8_t>(seed + i * 13 + (i >> 8));
  return v;
}

// A vnet header (12 bytes) followed by `frame`.
Bytes packet(const Bytes& frame, std::uint8_t flags = 0, std::uint8_t gso = 0) {
  Bytes p(kVnetHdrSize, 0);
  p[kHdrFlags] = flags;
  p[kHdrGsoType] = gso;
  p.insert(p.end(), frame.begin(), frame.end());
  return p;
}

struct SocketPair {
  UniqueFd device;
  UniqueFd peer;
};

SocketPair make_pair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// --- Rings in guest memory (16 entries), an interrupt and an epoll loop. ---

using testing::EpollLoop;
using testing::FakeInterrupt;
using testing::TestRing;

class NetDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create({{GuestAddress(0), 0x100000}});
    ASSERT_TRUE(m) << m.error().message();
    mem_.emplace(std::move(*m));
    rx_.emplace(*mem_, 0x1000);
    tx_.emplace(*mem_, 0x2000);
    auto a = EventFd::create();
    auto b = EventFd::create();
    ASSERT_TRUE(a && b);
    rx_notify_.emplace(std::move(*a));
    tx_notify_.emplace(std::move(*b));
    SocketPair p = make_pair();
    peer_ = std::move(p.peer);
    device_.emplace(Tap::from_fd(std::move(p.device)), kMac, "test0",
                    metrics::registry().group("net_test0"));
  }
  void TearDown() override {
    if (device_) device_->reset();
  }

  void activate(std::uint64_t acked) {
    device_->ack_features(acked);
    ASSERT_TRUE(device_->activate(*mem_,
                                  {ActiveQueue{&rx_->queue(), rx_notify_->fd()},
                                   ActiveQueue{&tx_->queue(), tx_notify_->fd()}},
                                  irq_, loop_));
  }

  // A guest buffer filled with `data` (readable) or 0xee (writable).
  Descriptor buffer(std::uint32_t len, bool writable, const Bytes* data = nullptr) {
    const GuestAddress a(next_);
    next_ += (len + 15) / 16 * 16 + 16;
    Bytes fill = data != nullptr ? *data : Bytes(len, 0xee);
    EXPECT_TRUE(mem_->write(a, std::as_bytes(std::span(fill))));
    return Descriptor{a, len, writable};
  }
  // `data` cut into readable descriptors of the given sizes.
  std::vector<Descriptor> readable_chain(const Bytes& data, const std::vector<std::size_t>& cuts) {
    std::vector<Descriptor> out;
    std::size_t off = 0;
    for (std::size_t len : cuts) {
      Bytes part(data.begin() + static_cast<std::ptrdiff_t>(off),
                 data.begin() + static_cast<std::ptrdiff_t>(off + len));
      out.push_back(buffer(static_cast<std::uint32_t>(len), false, &part));
      off += len;
    }
    EXPECT_EQ(off, data.size());
    return out;
  }
  Bytes read_guest(GuestAddress a, std::size_t len) {
    Bytes out(len);
    EXPECT_TRUE(mem_->read(a, std::as_writable_bytes(std::span(out))));
    return out;
  }
  void send_from_peer(const Bytes& p) {
    ASSERT_EQ(::send(peer_.get(), p.data(), p.size(), 0), static_cast<ssize_t>(p.size()));
  }
  std::optional<Bytes> recv_at_peer() {
    Bytes buf(kMaxPacketSize + 64);
    const ssize_t n = ::recv(peer_.get(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    buf.resize(static_cast<std::size_t>(n));
    return buf;
  }

  static constexpr MacAddress kMac{0x02, 0x00, 0x00, 0x12, 0x34, 0x56};
  std::optional<GuestMemory> mem_;
  std::optional<TestRing> rx_;
  std::optional<TestRing> tx_;
  std::optional<EventFd> rx_notify_;
  std::optional<EventFd> tx_notify_;
  UniqueFd peer_;
  EpollLoop loop_;
  std::shared_ptr<FakeInterrupt> irq_ = std::make_shared<FakeInterrupt>();
  std::optional<NetDevice> device_;
  std::uint64_t next_ = 0x10000;
};

constexpr std::uint64_t kOffloadBits = kFeatureCsum | kFeatureGuestCsum | kFeatureHostTso4 |
                                       kFeatureHostTso6 | kFeatureGuestTso4 | kFeatureGuestTso6;

// --- Features and config space ---

TEST(NetDevice, WithoutOffloadSupportOffersNoOffloadBitsAndNoMacWhenAbsent) {
  SocketPair p = make_pair();
  NetDevice dev(Tap::from_fd(std::move(p.device)), std::nullopt, "test0",
                metrics::registry().group("net_test0"));
  const std::uint64_t f = dev.features();
  EXPECT_EQ(dev.device_type(), 1u);
  EXPECT_EQ(dev.queue_max_sizes(), (std::vector<std::uint16_t>{256, 256}));
  EXPECT_TRUE(f & kFeatureVersion1);
  EXPECT_TRUE(f & kFeatureEventIdx);
  EXPECT_TRUE(f & kFeatureMrgRxbuf);
  EXPECT_TRUE(f & kFeatureStatus);
  EXPECT_FALSE(f & kFeatureMac);
  EXPECT_EQ(f & kOffloadBits, 0u);
  // Acking everything sets no offload on a TAP that has none.
  dev.ack_features(~std::uint64_t{0});
  EXPECT_EQ(dev.tap().offloads(), 0u);
}

TEST(NetDevice, WithOffloadSupportOffersOffloadsAndMapsGuestFeaturesToTapFlags) {
  SocketPair p = make_pair();
  NetDevice dev(Tap::from_fd(std::move(p.device), /*fake_offloads=*/true), std::nullopt, "test0",
                metrics::registry().group("net_test0"));
  EXPECT_EQ(dev.features() & kOffloadBits, kOffloadBits);
  dev.ack_features(kFeatureVersion1 | kFeatureGuestCsum | kFeatureGuestTso4 | kFeatureHostTso6);
  EXPECT_EQ(dev.tap().offloads(), kTunOffloadCsum | kTunOffloadTso4);
  dev.ack_features(kFeatureVersion1 | kFeatureGuestCsum | kFeatureGuestTso4 | kFeatureGuestTso6);
  EXPECT_EQ(dev.tap().offloads(), kTunOffloadCsum | kTunOffloadTso4 | kTunOffloadTso6);
  // TSO without checksum offload is meaningless: nothing is enabled.
  dev.ack_features(kFeatureVersion1 | kFeatureGuestTso4);
  EXPECT_EQ(dev.tap().offloads(), 0u);
  dev.ack_features(kFeatureVersion1 | kFeatureGuestCsum);
  dev.reset();
  EXPECT_EQ(dev.tap().offloads(), 0u);
}

TEST_F(NetDeviceTest, ConfigSpaceHoldsMacAndLinkUpAndIgnoresWrites) {
  EXPECT_TRUE(device_->features() & kFeatureMac);
  std::array<std::uint8_t, 10> cfg{};
  cfg.fill(0x99);
  device_->read_config(0, cfg);
  EXPECT_TRUE(std::equal(kMac.begin(), kMac.end(), cfg.begin()));
  EXPECT_EQ(cfg[6], kStatusLinkUp);
  EXPECT_EQ(cfg[7], 0);
  EXPECT_EQ(cfg[8], 0);  // past the end
  EXPECT_EQ(cfg[9], 0);
  const std::array<std::uint8_t, 6> junk{1, 2, 3, 4, 5, 6};
  device_->write_config(0, junk);
  std::array<std::uint8_t, 2> status{};
  device_->read_config(kConfigStatus, status);
  EXPECT_EQ(status[0], kStatusLinkUp);
  std::array<std::uint8_t, 1> mac0{};
  device_->read_config(0, mac0);
  EXPECT_EQ(mac0[0], kMac[0]);
  std::array<std::uint8_t, 4> far{9, 9, 9, 9};
  device_->read_config(~std::uint64_t{0} - 1, far);
  EXPECT_EQ(far, (std::array<std::uint8_t, 4>{}));
}

// --- TX ---

TEST_F(NetDeviceTest, TxFrameSpreadOverDescriptorsReachesThePeerIntact) {
  activate(kFeatureVersion1 | kFeatureEventIdx);
  const Bytes p = packet(pattern(1500, 3));
  // The header itself is split, then the payload over three more pieces.
  tx_->post(readable_chain(p, {5, 7, 700, 300, 500}));
  ASSERT_TRUE(tx_notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return tx_->used_idx() == 1; }));
  auto got = recv_at_peer();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, p);
  EXPECT_EQ(tx_->used(0), (std::pair<std::uint32_t, std::uint32_t>{0, 0}));
  EXPECT_GE(irq_->used.load(), 1);
  const auto m = device_->metrics();
  EXPECT_EQ(m.tx_frames, 1u);
  EXPECT_EQ(m.tx_bytes, 1500u);
  EXPECT_EQ(m.tx_drops, 0u);
}

TEST_F(NetDeviceTest, TxChainsPostedBeforeActivationAreSentWithoutANotify) {
  const Bytes a = packet(pattern(60, 1));
  const Bytes b = packet(pattern(90, 2));
  tx_->post(readable_chain(a, {a.size()}));
  tx_->post(readable_chain(b, {b.size()}));
  activate(kFeatureVersion1);
  ASSERT_TRUE(loop_.run_until([&] { return tx_->used_idx() == 2; }));
  EXPECT_EQ(recv_at_peer(), a);
  EXPECT_EQ(recv_at_peer(), b);
}

TEST_F(NetDeviceTest, OversizeAndUndersizeTxFramesAreDroppedAndCounted) {
  activate(kFeatureVersion1);
  const Bytes big = packet(pattern(kMaxFrameSize + 1, 4));
  tx_->post(readable_chain(big, {kVnetHdrSize, big.size() - kVnetHdrSize}));
  const Bytes tiny(kVnetHdrSize - 1, 0);
  tx_->post(readable_chain(tiny, {tiny.size()}));
  // A frame of exactly the limit still goes through.
  const Bytes max = packet(pattern(kMaxFrameSize, 5));
  tx_->post(readable_chain(max, {max.size()}));
  ASSERT_TRUE(tx_notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return tx_->used_idx() == 3; }));
  EXPECT_EQ(recv_at_peer(), max);
  EXPECT_FALSE(recv_at_peer());
  const auto m = device_->metrics();
  EXPECT_EQ(m.tx_frames, 1u);
  EXPECT_EQ(m.tx_drops, 2u);
  EXPECT_EQ(m.tx_errors, 2u);
  EXPECT_EQ(irq_->needs_reset.load(), 0);
}

TEST_F(NetDeviceTest, TxOffloadHeaderNotNegotiatedIsDropped) {
  activate(kFeatureVersion1);
  const Bytes csum = packet(pattern(100, 6), kHdrFlagNeedsCsum);
  const Bytes gso = packet(pattern(100, 7), 0, 1);
  tx_->post(readable_chain(csum, {csum.size()}));
  tx_->post(readable_chain(gso, {gso.size()}));
  ASSERT_TRUE(tx_notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return tx_->used_idx() == 2; }));
  EXPECT_FALSE(recv_at_peer());
  EXPECT_EQ(device_->metrics().tx_drops, 2u);
}

TEST_F(NetDeviceTest, TxOffloadHeaderPassesWhenNegotiated) {
  SocketPair p = make_pair();
  peer_ = std::move(p.peer);
  device_.emplace(Tap::from_fd(std::move(p.device), /*fake_offloads=*/true), kMac, "test0",
                  metrics::registry().group("net_test0"));
  activate(kFeatureVersion1 | kFeatureCsum | kFeatureHostTso4);
  const Bytes tso4 = packet(pattern(3000, 21), kHdrFlagNeedsCsum, 1);
  const Bytes tso6 = packet(pattern(3000, 22), kHdrFlagNeedsCsum, 4);  // HOST_TSO6 not acked
  tx_->post(readable_chain(tso4, {tso4.size()}));
  tx_->post(readable_chain(tso6, {tso6.size()}));
  ASSERT_TRUE(tx_notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return tx_->used_idx() == 2; }));
  EXPECT_EQ(recv_at_peer(), tso4);
  EXPECT_FALSE(recv_at_peer());
  EXPECT_EQ(device_->metrics().tx_frames, 1u);
  EXPECT_EQ(device_->metrics().tx_drops, 1u);
}

TEST_F(NetDeviceTest, MalformedTxChainSetsNeedsResetOnceAndStops) {
  activate(kFeatureVersion1);
  const Descriptor d = buffer(64, false);
  // A chain whose next index is outside the ring.
  tx_->put_desc(0, d.addr.value(), d.len, kDescFlagNext, 200);
  tx_->publish(0);
  ASSERT_TRUE(tx_notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return irq_->needs_reset.load() == 1; }));
  const Bytes p = packet(pattern(60, 8));
  tx_->post(readable_chain(p, {p.size()}));
  ASSERT_TRUE(tx_notify_->signal());
  loop_.run_for(std::chrono::milliseconds(50));
  EXPECT_EQ(irq_->needs_reset.load(), 1);
  EXPECT_FALSE(recv_at_peer());
  EXPECT_EQ(tx_->used_idx(), 0);
  EXPECT_FALSE(device_->tap_polling());
}

// --- RX ---

TEST_F(NetDeviceTest, RxFrameLandsInGuestBufferWithTheRightUsedLength) {
  activate(kFeatureVersion1);
  const Descriptor a = buffer(1000, true);
  const Descriptor b = buffer(1048, true);
  rx_->post({a, b});
  const Bytes p = packet(pattern(1400, 9));
  send_from_peer(p);
  ASSERT_TRUE(loop_.run_until([&] { return rx_->used_idx() == 1; }));
  EXPECT_EQ(rx_->used(0), (std::pair<std::uint32_t, std::uint32_t>{0, p.size()}));
  Bytes got = read_guest(a.addr, 1000);
  const Bytes rest = read_guest(b.addr, p.size() - 1000);
  got.insert(got.end(), rest.begin(), rest.end());
  Bytes want = p;
  want[kHdrNumBuffers] = 1;  // num_buffers is always set
  EXPECT_EQ(got, want);
  EXPECT_EQ(read_guest(GuestAddress(b.addr.value() + (p.size() - 1000)), 1)[0], 0xee);
  EXPECT_GE(irq_->used.load(), 1);
  const auto m = device_->metrics();
  EXPECT_EQ(m.rx_frames, 1u);
  EXPECT_EQ(m.rx_bytes, 1400u);
}

TEST_F(NetDeviceTest, RxMergeableFrameSpansThreeBuffersWithNumBuffers) {
  activate(kFeatureVersion1 | kFeatureMrgRxbuf | kFeatureEventIdx);
  std::vector<Descriptor> bufs;
  for (int i = 0; i < 4; ++i) {
    bufs.push_back(buffer(512, true));
    rx_->post({bufs.back()});
  }
  const Bytes p = packet(pattern(1200, 10));  // 1212 bytes: 512 + 512 + 188
  send_from_peer(p);
  ASSERT_TRUE(loop_.run_until([&] { return rx_->used_idx() == 3; }));
  EXPECT_EQ(rx_->used(0).second, 512u);
  EXPECT_EQ(rx_->used(1).second, 512u);
  EXPECT_EQ(rx_->used(2).second, 188u);
  Bytes got;
  for (int i = 0; i < 3; ++i) {
    const Bytes part = read_guest(bufs[i].addr, rx_->used(static_cast<std::uint16_t>(i)).second);
    got.insert(got.end(), part.begin(), part.end());
  }
  Bytes want = p;
  want[kHdrNumBuffers] = 3;
  EXPECT_EQ(got, want);
  // The fourth buffer still serves the next frame, alone.
  const Bytes small = packet(pattern(100, 11));
  send_from_peer(small);
  ASSERT_TRUE(loop_.run_until([&] { return rx_->used_idx() == 4; }));
  EXPECT_EQ(rx_->used(3).second, small.size());
  EXPECT_EQ(read_guest(bufs[3].addr, kVnetHdrSize)[kHdrNumBuffers], 1);
  EXPECT_EQ(device_->metrics().rx_frames, 2u);
}

TEST_F(NetDeviceTest, RxMergeableFrameWaitsUntilEnoughBuffersArrive) {
  activate(kFeatureVersion1 | kFeatureMrgRxbuf);
  const Descriptor first = buffer(256, true);
  rx_->post({first});
  const Bytes p = packet(pattern(400, 12));
  send_from_peer(p);
  ASSERT_TRUE(loop_.run_until([&] { return !device_->tap_polling(); }));
  EXPECT_EQ(rx_->used_idx(), 0);  // one buffer is not enough: nothing used
  const Descriptor second = buffer(256, true);
  rx_->post({second});
  ASSERT_TRUE(rx_notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return rx_->used_idx() == 2; }));
  EXPECT_EQ(rx_->used(0), (std::pair<std::uint32_t, std::uint32_t>{0, 256}));
  EXPECT_EQ(rx_->used(1), (std::pair<std::uint32_t, std::uint32_t>{1, p.size() - 256}));
  EXPECT_EQ(read_guest(first.addr, kVnetHdrSize)[kHdrNumBuffers], 2);
}

TEST_F(NetDeviceTest, NoRxBuffersPausesTapPollingUntilRxNotify) {
  activate(kFeatureVersion1 | kFeatureEventIdx);
  const Bytes p = packet(pattern(300, 13));
  send_from_peer(p);
  ASSERT_TRUE(loop_.run_until([&] { return !device_->tap_polling(); }));
  // The frame is still waiting, yet the loop stays idle.
  const int before = loop_.dispatched();
  loop_.run_for(std::chrono::milliseconds(100));
  EXPECT_LE(loop_.dispatched() - before, 1);
  EXPECT_EQ(loop_.registered(), 4u);  // the two notify fds and the two timers only
  EXPECT_EQ(rx_->used_idx(), 0);

  const Descriptor d = buffer(2048, true);
  rx_->post({d});
  rx_->post({buffer(2048, true)});
  ASSERT_TRUE(rx_notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return rx_->used_idx() == 1; }));
  // A buffer is left: the TAP is watched again.
  EXPECT_TRUE(device_->tap_polling());
  EXPECT_EQ(loop_.registered(), 5u);
  EXPECT_EQ(rx_->used(0).second, p.size());
  Bytes got = read_guest(d.addr, p.size());
  got[kHdrNumBuffers] = 0;
  EXPECT_EQ(got, p);
  // Once that one is used too, polling pauses again.
  send_from_peer(p);
  ASSERT_TRUE(loop_.run_until([&] { return rx_->used_idx() == 2; }));
  ASSERT_TRUE(loop_.run_until([&] { return !device_->tap_polling(); }));
}

TEST_F(NetDeviceTest, RxFrameTooBigForOneBufferWithoutMrgIsDroppedAndBufferKept) {
  activate(kFeatureVersion1);
  const Descriptor d = buffer(256, true);
  rx_->post({d});
  send_from_peer(packet(pattern(1000, 14)));
  const Bytes small = packet(pattern(200, 15));
  send_from_peer(small);
  ASSERT_TRUE(loop_.run_until([&] { return rx_->used_idx() == 1; }));
  EXPECT_EQ(rx_->used(0), (std::pair<std::uint32_t, std::uint32_t>{0, small.size()}));
  Bytes got = read_guest(d.addr, small.size());
  got[kHdrNumBuffers] = 0;
  EXPECT_EQ(got, small);
  const auto m = device_->metrics();
  EXPECT_EQ(m.rx_drops, 1u);
  EXPECT_EQ(m.rx_frames, 1u);
}

TEST_F(NetDeviceTest, RxIntoLargeBufferGoesDirectAndOversizeFramesAreDropped) {
  activate(kFeatureVersion1);
  const std::uint32_t big = kMaxPacketSize + 4096;
  const Descriptor a = buffer(big / 2, true);
  const Descriptor b = buffer(big - big / 2, true);
  rx_->post({a, b});
  send_from_peer(packet(pattern(kMaxFrameSize + 1, 16)));  // one byte too many
  const Bytes p = packet(pattern(kMaxFrameSize, 17));
  send_from_peer(p);
  ASSERT_TRUE(loop_.run_until([&] { return rx_->used_idx() == 1; }));
  EXPECT_EQ(rx_->used(0).second, p.size());
  Bytes got = read_guest(a.addr, a.len);
  const Bytes rest = read_guest(b.addr, p.size() - a.len);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got[kHdrNumBuffers], 1);
  got[kHdrNumBuffers] = 0;
  EXPECT_EQ(got, p);
  const auto m = device_->metrics();
  EXPECT_EQ(m.rx_drops, 1u);
  EXPECT_EQ(m.rx_errors, 1u);
  EXPECT_EQ(m.rx_frames, 1u);
}

TEST_F(NetDeviceTest, RxBufferWithoutRoomForTheHeaderSetsNeedsReset) {
  activate(kFeatureVersion1);
  rx_->post({buffer(8, true)});
  send_from_peer(packet(pattern(60, 18)));
  ASSERT_TRUE(loop_.run_until([&] { return irq_->needs_reset.load() == 1; }));
  loop_.run_for(std::chrono::milliseconds(30));
  EXPECT_EQ(irq_->needs_reset.load(), 1);
  EXPECT_FALSE(device_->tap_polling());
}

TEST_F(NetDeviceTest, ResetUnregistersEveryFdAndAllowsReactivation) {
  activate(kFeatureVersion1);
  EXPECT_EQ(loop_.registered(), 5u);  // TAP, notify fds, timers
  device_->reset();
  EXPECT_EQ(loop_.registered(), 0u);
  EXPECT_FALSE(device_->tap_polling());
  // A fresh activation on reset rings works again.
  rx_.emplace(*mem_, 0x4000);
  tx_.emplace(*mem_, 0x5000);
  activate(kFeatureVersion1);
  const Bytes p = packet(pattern(80, 19));
  tx_->post(readable_chain(p, {p.size()}));
  ASSERT_TRUE(tx_notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return tx_->used_idx() == 1; }));
  EXPECT_EQ(recv_at_peer(), p);
}

TEST_F(NetDeviceTest, ActivateRejectsWrongQueueCount) {
  EXPECT_FALSE(
      device_->activate(*mem_, {ActiveQueue{&rx_->queue(), rx_notify_->fd()}}, irq_, loop_));
  EXPECT_EQ(loop_.registered(), 0u);
}

// --- Tap ---

// --- Metrics and rate limiting ---

std::uint64_t net_metric(const std::string& iface, const char* name) {
  return metrics::registry().group("net_" + iface).counter(name).value();
}

// A fixture variant whose device has rate limits and its own iface id (so
// the registry's counters start at zero).
class NetLimitTest : public NetDeviceTest {
 protected:
  void limited(const std::string& id, RateLimits rx, RateLimits tx) {
    SocketPair p = make_pair();
    peer_ = std::move(p.peer);
    device_.emplace(Tap::from_fd(std::move(p.device)), kMac, id,
                    metrics::registry().group("net_" + id), rx, tx);
  }
  // Dispatches during `span` (a device spinning on a throttled queue shows).
  int dispatches_during(std::chrono::milliseconds span) {
    const int before = loop_.dispatched();
    loop_.run_for(span);
    return loop_.dispatched() - before;
  }
};

TEST_F(NetLimitTest, RegistryCountsFramesBytesDropsAndMalformed) {
  limited("metrics0", {}, {});
  activate(kFeatureVersion1);
  const Bytes good = packet(pattern(100, 30));
  tx_->post(readable_chain(good, {good.size()}));
  const Bytes tiny(kVnetHdrSize - 1, 0);
  tx_->post(readable_chain(tiny, {tiny.size()}));
  ASSERT_TRUE(tx_notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return tx_->used_idx() == 2; }));
  rx_->post({buffer(256, true)});
  ASSERT_TRUE(rx_notify_->signal());
  send_from_peer(packet(pattern(1000, 31)));  // too big for the one buffer
  send_from_peer(packet(pattern(50, 32)));
  ASSERT_TRUE(loop_.run_until([&] { return rx_->used_idx() == 1; }));
  EXPECT_EQ(net_metric("metrics0", "tx_packets"), 1u);
  EXPECT_EQ(net_metric("metrics0", "tx_bytes"), 100u);
  EXPECT_EQ(net_metric("metrics0", "tx_dropped"), 1u);
  EXPECT_EQ(net_metric("metrics0", "tx_malformed"), 1u);
  EXPECT_EQ(net_metric("metrics0", "rx_packets"), 1u);
  EXPECT_EQ(net_metric("metrics0", "rx_bytes"), 50u);
  EXPECT_EQ(net_metric("metrics0", "rx_dropped"), 1u);
  EXPECT_EQ(net_metric("metrics0", "rx_rate_limiter_throttled"), 0u);
  EXPECT_EQ(net_metric("metrics0", "tx_rate_limiter_throttled"), 0u);
}

TEST_F(NetLimitTest, TxOpsLimitDelaysFramesWithoutDroppingOrSpinning) {
  // One frame per 100 ms: three frames take at least 200 ms.
  limited("txops", {}, RateLimits{std::nullopt, TokenBucketParams{1, 0, 100}});
  std::vector<Bytes> frames;
  for (std::uint8_t i = 0; i < 3; ++i) {
    frames.push_back(packet(pattern(200, static_cast<std::uint8_t>(40 + i))));
    tx_->post(readable_chain(frames.back(), {frames.back().size()}));
  }
  const auto start = std::chrono::steady_clock::now();
  activate(kFeatureVersion1 | kFeatureEventIdx);
  ASSERT_TRUE(loop_.run_until([&] { return device_->tx_throttled(); }));
  EXPECT_LT(tx_->used_idx(), 3);
  // Notifications while throttled change nothing; the loop stays idle.
  ASSERT_TRUE(tx_notify_->signal());
  EXPECT_LT(dispatches_during(std::chrono::milliseconds(50)), 10);
  ASSERT_TRUE(loop_.run_until([&] { return tx_->used_idx() == 3; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
  for (const Bytes& f : frames) EXPECT_EQ(recv_at_peer(), f);
  EXPECT_EQ(device_->metrics().tx_drops, 0u);
  EXPECT_GE(net_metric("txops", "tx_rate_limiter_throttled"), 1u);
  EXPECT_EQ(net_metric("txops", "tx_packets"), 3u);
}

TEST_F(NetLimitTest, TxBandwidthLimitCountsHeaderAndFrameBytes) {
  // 1000 bytes per 100 ms; four 512-byte packets (500 + header) need 1048
  // bytes more than the full bucket: more than 100 ms.
  limited("txbw", {}, RateLimits{TokenBucketParams{1000, 0, 100}, std::nullopt});
  for (std::uint8_t i = 0; i < 4; ++i) {
    const Bytes f = packet(pattern(500, i));
    tx_->post(readable_chain(f, {f.size()}));
  }
  const auto start = std::chrono::steady_clock::now();
  activate(kFeatureVersion1);
  ASSERT_TRUE(loop_.run_until([&] { return tx_->used_idx() == 4; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(100));
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(recv_at_peer());
  EXPECT_GE(net_metric("txbw", "tx_rate_limiter_throttled"), 1u);
}

TEST_F(NetLimitTest, RxOpsLimitHoldsFramesAndStopsReadingTheTap) {
  // One frame per 100 ms. The buffers are big enough for the direct path,
  // which a limiter must not take (it would publish before asking).
  limited("rxops", RateLimits{std::nullopt, TokenBucketParams{1, 0, 100}}, {});
  std::vector<Descriptor> bufs;
  for (int i = 0; i < 3; ++i) {
    bufs.push_back(buffer(kMaxPacketSize + 16, true));
    rx_->post({bufs.back()});
  }
  const auto start = std::chrono::steady_clock::now();
  activate(kFeatureVersion1);
  std::vector<Bytes> frames;
  for (std::uint8_t i = 0; i < 3; ++i) {
    frames.push_back(packet(pattern(300, static_cast<std::uint8_t>(50 + i))));
    send_from_peer(frames.back());
  }
  ASSERT_TRUE(loop_.run_until([&] { return device_->rx_throttled(); }));
  EXPECT_FALSE(device_->tap_polling());
  EXPECT_LT(rx_->used_idx(), 3);
  ASSERT_TRUE(rx_notify_->signal());  // buffers "posted": still throttled
  EXPECT_LT(dispatches_during(std::chrono::milliseconds(50)), 10);
  ASSERT_TRUE(loop_.run_until([&] { return rx_->used_idx() == 3; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
  for (std::uint16_t i = 0; i < 3; ++i) {
    ASSERT_EQ(rx_->used(i).second, frames[i].size());
    Bytes got = read_guest(bufs[i].addr, frames[i].size());
    got[kHdrNumBuffers] = 0;
    EXPECT_EQ(got, frames[i]) << i;
  }
  EXPECT_EQ(device_->metrics().rx_drops, 0u);
  EXPECT_GE(net_metric("rxops", "rx_rate_limiter_throttled"), 1u);
  EXPECT_EQ(net_metric("rxops", "rx_packets"), 3u);
}

TEST_F(NetLimitTest, UpdatesFromAnotherThreadLiftTheThrottles) {
  // One frame per hour each way.
  const RateLimits hourly{std::nullopt, TokenBucketParams{1, 0, 3600 * 1000}};
  limited("update0", hourly, hourly);
  for (int i = 0; i < 2; ++i) rx_->post({buffer(2048, true)});
  activate(kFeatureVersion1);
  const Bytes a = packet(pattern(64, 60));
  const Bytes b = packet(pattern(64, 61));
  tx_->post(readable_chain(a, {a.size()}));
  tx_->post(readable_chain(b, {b.size()}));
  ASSERT_TRUE(tx_notify_->signal());
  send_from_peer(a);
  send_from_peer(b);
  ASSERT_TRUE(loop_.run_until([&] { return device_->tx_throttled() && device_->rx_throttled(); }));
  EXPECT_EQ(tx_->used_idx(), 1);
  EXPECT_EQ(rx_->used_idx(), 1);
  std::thread api([&] {
    device_->update_tx_rate_limiter({});
    device_->update_rx_rate_limiter({});
  });
  api.join();
  ASSERT_TRUE(loop_.run_until([&] { return tx_->used_idx() == 2 && rx_->used_idx() == 2; }));
  EXPECT_EQ(recv_at_peer(), a);
  EXPECT_EQ(recv_at_peer(), b);
  EXPECT_FALSE(device_->tx_throttled());
  EXPECT_FALSE(device_->rx_throttled());
  // After the RX throttle, the TAP is polled again.
  EXPECT_TRUE(loop_.run_until([&] { return !device_->tap_polling(); }));  // buffers used up
  rx_->post({buffer(2048, true)});
  ASSERT_TRUE(rx_notify_->signal());
  send_from_peer(a);
  ASSERT_TRUE(loop_.run_until([&] { return rx_->used_idx() == 3; }));
}

TEST_F(NetLimitTest, ResetWhileThrottledUnregistersEverything) {
  const RateLimits hourly{std::nullopt, TokenBucketParams{1, 0, 3600 * 1000}};
  limited("reset0", hourly, hourly);
  activate(kFeatureVersion1);
  const Bytes a = packet(pattern(64, 70));
  tx_->post(readable_chain(a, {a.size()}));
  tx_->post(readable_chain(a, {a.size()}));
  ASSERT_TRUE(tx_notify_->signal());
  ASSERT_TRUE(loop_.run_until([&] { return device_->tx_throttled(); }));
  device_->reset();
  EXPECT_EQ(loop_.registered(), 0u);
  EXPECT_FALSE(device_->tx_throttled());
}

TEST(Tap, RejectsBadInterfaceNames) {
  EXPECT_FALSE(Tap::open(""));
  EXPECT_FALSE(Tap::open(std::string(IFNAMSIZ, 'x')));
  auto r = Tap::open("a/b");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
}

TEST(Tap, SocketpairTapMovesWholeFramesAndRefusesOffloads) {
  SocketPair p = make_pair();
  const int peer = p.peer.get();
  Tap tap = Tap::from_fd(std::move(p.device));
  EXPECT_FALSE(tap.supports_offloads());
  EXPECT_TRUE(tap.set_offloads(0));
  EXPECT_FALSE(tap.set_offloads(kTunOffloadCsum));
  std::array<std::byte, 64> buf{};
  EXPECT_EQ(*tap.read_frame(std::array<std::span<std::byte>, 1>{buf}), std::nullopt);
  const Bytes frame = packet(pattern(40, 20));
  const auto bytes = std::as_bytes(std::span(frame));
  const std::array<std::span<const std::byte>, 2> parts{bytes.first(10), bytes.subspan(10)};
  ASSERT_EQ(*tap.write_frame(parts), frame.size());
  Bytes got(100);
  ASSERT_EQ(::recv(peer, got.data(), got.size(), 0), static_cast<ssize_t>(frame.size()));
  ASSERT_EQ(::send(peer, frame.data(), frame.size(), 0), static_cast<ssize_t>(frame.size()));
  std::array<std::byte, 20> a{};
  std::array<std::byte, 100> b{};
  auto n = tap.read_frame(std::array<std::span<std::byte>, 2>{a, b});
  ASSERT_TRUE(n && *n);
  EXPECT_EQ(**n, frame.size());
  EXPECT_EQ(std::memcmp(a.data(), frame.data(), 20), 0);
  EXPECT_EQ(std::memcmp(b.data(), frame.data() + 20, frame.size() - 20), 0);
}

// Opens a real TAP in a private network namespace (forked child, so the
// test process keeps its namespace) and exchanges a frame each way with an
// AF_PACKET socket bound to the interface.
int real_tap_child() {
  if (::unshare(CLONE_NEWNET) != 0) return errno == EPERM ? 77 : 10;
  auto tap = Tap::open("hvztest%d");
  if (!tap) return 11;
  if (!tap->supports_offloads()) return 12;
  if (!tap->set_offloads(kTunOffloadCsum | kTunOffloadTso4 | kTunOffloadTso6)) return 13;
  if (!tap->set_offloads(0)) return 13;
  UniqueFd ctl(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, tap->if_name().c_str(), IFNAMSIZ - 1);
  if (::ioctl(ctl.get(), SIOCGIFFLAGS, &ifr) != 0) return 14;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(ctl.get(), SIOCSIFFLAGS, &ifr) != 0) return 15;
  const unsigned index = ::if_nametoindex(tap->if_name().c_str());
  UniqueFd pkt(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  if (!pkt || index == 0) return 16;
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(index);
  if (::bind(pkt.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) return 17;

  // An Ethernet frame with the local experimental EtherType and a marker.
  Bytes frame(64, 0);
  std::memset(frame.data(), 0xff, 6);
  const std::uint8_t src[6] = {0x02, 0, 0, 0, 0, 1};
  std::memcpy(frame.data() + 6, src, 6);
  frame[12] = 0x88;
  frame[13] = 0xb5;
  for (std::size_t i = 14; i < frame.size(); ++i) frame[i] = static_cast<std::uint8_t>(i);

  // Kernel → TAP reader: sent on the interface, read with a vnet header.
  if (::send(pkt.get(), frame.data(), frame.size(), 0) != static_cast<ssize_t>(frame.size())) {
    return 18;
  }
  bool seen = false;
  for (int tries = 0; tries < 50 && !seen; ++tries) {
    pollfd pfd{tap->fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 100) <= 0) continue;
    Bytes buf(2048);
    auto n = tap->read_frame(
        std::array<std::span<std::byte>, 1>{std::as_writable_bytes(std::span(buf))});
    if (!n) return 19;
    if (!*n) continue;
    seen = **n == kVnetHdrSize + frame.size() &&
           std::memcmp(buf.data() + kVnetHdrSize, frame.data(), frame.size()) == 0;
  }
  if (!seen) return 20;

  // TAP writer → kernel: the packet socket receives it as incoming.
  frame[20] = 0x5a;
  const Bytes p = packet(frame);
  const std::array<std::span<const std::byte>, 1> out{std::as_bytes(std::span(p))};
  if (auto w = tap->write_frame(out); !w || *w != p.size()) return 21;
  for (int tries = 0; tries < 50; ++tries) {
    pollfd pfd{pkt.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 100) <= 0) continue;
    Bytes buf(2048);
    sockaddr_ll from{};
    socklen_t len = sizeof from;
    const ssize_t n =
        ::recvfrom(pkt.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n == static_cast<ssize_t>(frame.size()) && from.sll_pkttype != PACKET_OUTGOING &&
        std::memcmp(buf.data(), frame.data(), frame.size()) == 0) {
      return 0;
    }
  }
  return 22;
}

TEST(Tap, RealTapInPrivateNetnsExchangesFramesWithVnetHeader) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(real_tap_child());
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "unshare(CLONE_NEWNET): EPERM";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "real TAP check failed at step " << WEXITSTATUS(status);
}

}  // namespace
}  // namespace hvz::virtio::net
