// I8042: controller commands, status bits, the reset line and Ctrl-Alt-Del.
#include "devices/i8042.hpp"

#include <gtest/gtest.h>

#include <array>
#include <memory>

#include "devices/tests/test_irq_line.hpp"

namespace hvz::devices_test {
namespace {

using namespace hvz::devices;

using namespace i8042;
using devices::testing::CountingIrqLine;
using devices::testing::FailingIrqLine;

class I8042 : public ::testing::Test {
 protected:
  std::uint8_t rd(std::uint64_t offset) {
    std::uint8_t v = 0xee;
    dev_.read(offset, std::span<std::uint8_t>(&v, 1));
    return v;
  }
  void wr(std::uint64_t offset, std::uint8_t v) {
    dev_.write(offset, std::span<const std::uint8_t>(&v, 1));
  }
  std::uint8_t status() { return rd(kCommandOffset); }
  void command(std::uint8_t cmd) { wr(kCommandOffset, cmd); }
  // One controller command with a one-byte reply, as Linux's i8042_command.
  std::uint8_t query(std::uint8_t cmd) {
    command(cmd);
    EXPECT_NE(status() & kStatusOutputFull, 0) << "no reply to 0x" << std::hex << int{cmd};
    return rd(kDataOffset);
  }

  int resets_ = 0;
  std::shared_ptr<CountingIrqLine> irq_ = std::make_shared<CountingIrqLine>();
  devices::I8042 dev_{[this] { ++resets_; }, irq_};
};

TEST_F(I8042, ResetCommandCallsTheCallback) {
  command(kCmdResetCpu);
  EXPECT_EQ(resets_, 1);
  command(kCmdResetCpu);
  EXPECT_EQ(resets_, 2);
  wr(kDataOffset, kCmdResetCpu);  // on the data port it is a keyboard byte
  EXPECT_EQ(resets_, 2);
  command(0xff);  // pulses no line
  EXPECT_EQ(resets_, 2);
  command(0xf0);  // pulses all four, the reset line among them
  EXPECT_EQ(resets_, 3);
}

TEST_F(I8042, ResetCallbackRunsWithoutTheLock) {
  std::uint8_t seen = 0;
  devices::I8042* self = nullptr;
  devices::I8042 dev([&] { self->read(kCommandOffset, std::span<std::uint8_t>(&seen, 1)); },
                     nullptr);
  self = &dev;
  const std::uint8_t cmd = kCmdResetCpu;
  dev.write(kCommandOffset, std::span<const std::uint8_t>(&cmd, 1));
  EXPECT_NE(seen & kStatusKbdUnlocked, 0) << "the callback could use the device";
}

TEST_F(I8042, StatusReportsOutputBufferAndCommandBits) {
  EXPECT_EQ(status(), kStatusKbdUnlocked | kStatusSystemFlag);
  command(kCmdReadCtr);
  EXPECT_EQ(status(), kStatusKbdUnlocked | kStatusSystemFlag | kStatusCommand | kStatusOutputFull);
  rd(kDataOffset);
  EXPECT_EQ(status() & kStatusOutputFull, 0);
  wr(kDataOffset, 0xf4);  // keyboard command: acked
  EXPECT_EQ(status() & (kStatusCommand | kStatusOutputFull), kStatusOutputFull);
  EXPECT_EQ(status() & kStatusAuxData, 0);
  EXPECT_EQ(rd(kDataOffset), kKbdAck);
  EXPECT_EQ(rd(kDataOffset), 0) << "empty buffer reads 0";
  EXPECT_EQ(status() & kStatusOutputFull, 0);
}

TEST_F(I8042, ControlRegisterRoundTrips) {
  EXPECT_EQ(query(kCmdReadCtr), kDefaultCtr);
  command(kCmdWriteCtr);
  wr(kDataOffset, 0x52);
  EXPECT_EQ(status() & kStatusOutputFull, 0) << "a parameter is not a keyboard command";
  EXPECT_EQ(irq_->take(), 0u);
  EXPECT_EQ(query(kCmdReadCtr), 0x52);
  EXPECT_EQ(status() & kStatusSystemFlag, 0) << "status follows CTR's system flag";
  command(kCmdWriteCtr);
  wr(kDataOffset, kDefaultCtr);
  EXPECT_EQ(query(kCmdReadCtr), kDefaultCtr);
}

TEST_F(I8042, ReadControlRegisterDropsStaleBytes) {
  ASSERT_TRUE(dev_.trigger_ctrl_alt_del());
  EXPECT_EQ(query(kCmdReadCtr), kDefaultCtr);
  EXPECT_EQ(status() & kStatusOutputFull, 0);
}

TEST_F(I8042, OutputPortRoundTrips) {
  EXPECT_EQ(query(kCmdReadOutputPort), 0x03);
  command(kCmdWriteOutputPort);
  wr(kDataOffset, 0xdf);
  EXPECT_EQ(query(kCmdReadOutputPort), 0xdf);
  EXPECT_EQ(resets_, 0);
}

TEST_F(I8042, SelfTestsReportAKeyboardAndNoAuxPort) {
  EXPECT_EQ(query(kCmdSelfTest), kSelfTestOk);
  EXPECT_EQ(query(kCmdKbdTest), kInterfaceOk);
  EXPECT_EQ(query(kCmdAuxTest), kAuxClockStuckLow);
  // AUX loopback: the byte comes back, but not flagged as AUX data.
  command(kCmdWriteAuxBuffer);
  wr(kDataOffset, 0x5a);
  EXPECT_EQ(status() & (kStatusOutputFull | kStatusAuxData), kStatusOutputFull);
  EXPECT_EQ(rd(kDataOffset), 0x5a);
  // A byte for the absent mouse vanishes.
  command(kCmdWriteAux);
  wr(kDataOffset, 0xf4);
  EXPECT_EQ(status() & kStatusOutputFull, 0);
  EXPECT_EQ(irq_->take(), 0u) << "controller replies are polled, not interrupts";
}

TEST_F(I8042, EnableDisableCommandsUpdateTheControlRegister) {
  command(kCmdKbdDisable);
  command(kCmdAuxDisable);
  EXPECT_EQ(query(kCmdReadCtr), kDefaultCtr | kCtrKbdDisable | kCtrAuxDisable);
  command(kCmdKbdEnable);
  EXPECT_EQ(query(kCmdReadCtr), kDefaultCtr | kCtrAuxDisable);
  command(kCmdAuxEnable);
  EXPECT_EQ(query(kCmdReadCtr), kDefaultCtr);
}

TEST_F(I8042, KeyboardCommandsAreAckedWithAnInterrupt) {
  wr(kDataOffset, 0xff);  // keyboard reset
  EXPECT_EQ(irq_->take(), 1u);
  EXPECT_EQ(rd(kDataOffset), kKbdAck);
  EXPECT_EQ(irq_->take(), 0u);
  command(kCmdWriteKbdBuffer);
  wr(kDataOffset, 0x1c);
  EXPECT_EQ(irq_->take(), 1u);
  EXPECT_EQ(rd(kDataOffset), 0x1c);
}

TEST_F(I8042, CtrlAltDelReadsBackByteByByteWithInterrupts) {
  ASSERT_TRUE(dev_.trigger_ctrl_alt_del());
  EXPECT_EQ(irq_->take(), 3u) << "one per key";
  const std::array<std::uint8_t, 4> expected = {0x14, 0x11, 0xe0, 0x71};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    ASSERT_NE(status() & kStatusOutputFull, 0) << "byte " << i;
    EXPECT_EQ(rd(kDataOffset), expected[i]);
    const bool more = i + 1 < expected.size();
    EXPECT_EQ(irq_->take(), more ? 1u : 0u) << "after byte " << i;
  }
  EXPECT_EQ(status() & kStatusOutputFull, 0);
}

TEST_F(I8042, CtrlAltDelWithTheKeyboardInterruptOffQueuesSilently) {
  command(kCmdWriteCtr);
  wr(kDataOffset, kCtrSystemFlag);
  ASSERT_TRUE(dev_.trigger_ctrl_alt_del());
  EXPECT_EQ(irq_->take(), 0u);
  EXPECT_EQ(rd(kDataOffset), 0x14);
  EXPECT_EQ(irq_->take(), 0u);
}

TEST_F(I8042, CtrlAltDelFailsWhenTheBufferIsFull) {
  for (std::size_t i = 0; i < kBufferSize / kCtrlAltDel.size(); ++i) {
    ASSERT_TRUE(dev_.trigger_ctrl_alt_del()) << i;
  }
  irq_->take();
  auto r = dev_.trigger_ctrl_alt_del();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kBusy);
  EXPECT_EQ(irq_->take(), 0u);
  for (std::size_t i = 0; i < kBufferSize; ++i) {
    ASSERT_EQ(rd(kDataOffset), kCtrlAltDel[i % kCtrlAltDel.size()]) << i;
  }
  EXPECT_EQ(status() & kStatusOutputFull, 0);
}

TEST_F(I8042, CtrlAltDelReportsAFailingIrqLine) {
  auto irq = std::make_shared<FailingIrqLine>();
  devices::I8042 dev(nullptr, irq);
  EXPECT_FALSE(dev.trigger_ctrl_alt_del());
  std::uint8_t v = 0;
  dev.read(kDataOffset, std::span<std::uint8_t>(&v, 1));
  EXPECT_EQ(v, 0x14) << "the keys were queued anyway";
}

TEST_F(I8042, UnknownCommandsAreHarmless) {
  int expected_resets = 0;
  for (int cmd = 0; cmd < 256; ++cmd) {
    command(static_cast<std::uint8_t>(cmd));
    wr(kDataOffset, 0x00);  // a parameter, or a keyboard command
    while (status() & kStatusOutputFull) rd(kDataOffset);
    if ((cmd & 0xf1) == 0xf0) ++expected_resets;
  }
  EXPECT_EQ(resets_, expected_resets);
  EXPECT_EQ(expected_resets, 8);
  // Whatever the sweep did to CTR, the device still answers.
  command(kCmdWriteCtr);
  wr(kDataOffset, kDefaultCtr);
  EXPECT_EQ(query(kCmdReadCtr), kDefaultCtr);
}

TEST_F(I8042, WideAccessesAndUnusedOffsetsAreHarmless) {
  command(kCmdReadCtr);
  std::array<std::uint8_t, 4> buf = {9, 9, 9, 9};
  dev_.read(kDataOffset, buf);
  EXPECT_EQ(buf, (std::array<std::uint8_t, 4>{kDefaultCtr, 0, 0, 0}));
  const std::array<std::uint8_t, 2> w = {kCmdResetCpu, 0};
  dev_.write(kCommandOffset, w);
  EXPECT_EQ(resets_, 1);
  for (std::uint64_t off = 1; off < 4; ++off) {
    EXPECT_EQ(rd(off), 0);
    wr(off, kCmdResetCpu);
  }
  EXPECT_EQ(rd(1000), 0);
  dev_.read(kDataOffset, std::span<std::uint8_t>());
  dev_.write(kCommandOffset, std::span<const std::uint8_t>());
  EXPECT_EQ(resets_, 1);
}

TEST_F(I8042, NullCallbackAndIrqAreHarmless) {
  devices::I8042 dev(nullptr, nullptr);
  const std::uint8_t cmd = kCmdResetCpu;
  dev.write(kCommandOffset, std::span<const std::uint8_t>(&cmd, 1));
  EXPECT_TRUE(dev.trigger_ctrl_alt_del());
}

}  // namespace
}  // namespace hvz::devices_test
