// SerialState: save() captures every guest-visible register, FIFO byte and
// latch; restore() into a fresh UART rebuilds a device that answers the
// next accesses exactly as the original; malformed states are refused.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "devices/serial.hpp"
#include "devices/tests/test_irq_line.hpp"

namespace hvz::devices_test {
namespace {

using namespace hvz::devices;
using namespace uart;
using devices::testing::CountingIrqLine;

class RecordingOutput : public SerialOutput {
 public:
  void write(std::span<const std::uint8_t> bytes) override {
    bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
  }
  std::vector<std::uint8_t> bytes_;
};

// One UART with its interrupt line and output sink.
struct Uart {
  std::shared_ptr<CountingIrqLine> irq = std::make_shared<CountingIrqLine>();
  std::shared_ptr<RecordingOutput> out = std::make_shared<RecordingOutput>();
  devices::Serial serial{irq, out};

  std::uint8_t rd(std::uint64_t offset) {
    std::uint8_t v = 0xee;
    serial.read(offset, std::span<std::uint8_t>(&v, 1));
    return v;
  }
  void wr(std::uint64_t offset, std::uint8_t v) {
    serial.write(offset, std::span<const std::uint8_t>(&v, 1));
  }
};

class SerialState : public ::testing::Test {
 protected:
  // Drives `original_` into a state with something in every field: divisor
  // latch, loopback, a full FIFO with an overrun, THRE latched under RDA.
  void drive_original() {
    Uart& u = original_;
    u.wr(kLcr, kLcrDlab | 0x03);
    u.wr(kData, 0x01);  // DLL: 115200 baud
    u.wr(kIer, 0x00);   // DLM
    u.wr(kLcr, 0x1b);   // 8E1, DLAB off
    u.wr(kFcr, kFcrEnableFifo);
    u.wr(kIer, kIerRda | kIerThre | kIerRls);
    u.wr(kMcr, kMcrLoop | kMcrOut2 | kMcrDtr);
    u.wr(kScr, 0x5a);
    for (int i = 0; i < 70; ++i) u.wr(kData, static_cast<std::uint8_t>(0x30 + i));
    EXPECT_EQ(u.rd(kData), 0x30);
    EXPECT_EQ(u.rd(kData), 0x31);
  }

  // Reads `offset` on both UARTs and expects the same answer.
  std::uint8_t rd_both(std::uint64_t offset) {
    const std::uint8_t a = original_.rd(offset);
    const std::uint8_t b = restored_.rd(offset);
    EXPECT_EQ(a, b) << "register " << offset;
    return a;
  }
  void wr_both(std::uint64_t offset, std::uint8_t v) {
    original_.wr(offset, v);
    restored_.wr(offset, v);
  }

  Uart original_;
  Uart restored_;
};

TEST_F(SerialState, SaveRestoreSaveRoundTripsEveryField) {
  drive_original();
  const devices::SerialState saved = original_.serial.save();
  EXPECT_EQ(saved.dll, 0x01);
  EXPECT_EQ(saved.lcr, 0x1b);
  EXPECT_EQ(saved.ier, kIerRda | kIerThre | kIerRls);
  EXPECT_EQ(saved.mcr, kMcrLoop | kMcrOut2 | kMcrDtr);
  EXPECT_EQ(saved.scr, 0x5a);
  EXPECT_TRUE(saved.fifo_enabled);
  EXPECT_TRUE(saved.thre_pending);
  EXPECT_TRUE(saved.overrun);
  ASSERT_EQ(saved.rx_fifo.size(), kFifoSize - 2);
  EXPECT_EQ(saved.rx_fifo.front(), 0x32) << "oldest byte first";

  ASSERT_TRUE(restored_.serial.restore(saved));
  EXPECT_EQ(restored_.serial.save(), saved);
  EXPECT_EQ(restored_.irq->count(), 0u) << "restore sends no interrupt";
}

TEST_F(SerialState, RestoredUartAnswersLikeTheOriginal) {
  drive_original();
  ASSERT_TRUE(restored_.serial.restore(original_.serial.save()));
  original_.irq->take();

  EXPECT_EQ(rd_both(kIir), kIirFifoEnabled | kIirRls);
  EXPECT_EQ(rd_both(kLsr), kLsrDataReady | kLsrOverrun | kLsrThrEmpty | kLsrIdle);
  rd_both(kLsr);  // overrun cleared by the read above
  rd_both(kMsr);  // loopback: mirrors MCR
  rd_both(kIer);
  rd_both(kLcr);
  rd_both(kMcr);
  rd_both(kScr);
  // Drain the FIFO; the THRE interrupt latched before the save shows up
  // once RDA is gone, and reading IIR acknowledges it.
  for (std::size_t i = 0; i < kFifoSize; ++i) rd_both(kData);
  EXPECT_EQ(rd_both(kIir), kIirFifoEnabled | kIirThre);
  EXPECT_EQ(rd_both(kIir), kIirFifoEnabled | kIirNone);
  // Divisor latch and host input after leaving loopback.
  wr_both(kLcr, 0x80 | 0x1b);
  rd_both(kData);
  rd_both(kIer);
  wr_both(kLcr, 0x03);
  wr_both(kMcr, kMcrOut2);
  rd_both(kMsr);
  const std::vector<std::uint8_t> input = {'o', 'k'};
  ASSERT_TRUE(original_.serial.enqueue_input(input));
  ASSERT_TRUE(restored_.serial.enqueue_input(input));
  EXPECT_EQ(rd_both(kData), 'o');
  wr_both(kData, 'x');
  EXPECT_EQ(original_.serial.save(), restored_.serial.save());
  EXPECT_EQ(original_.irq->take(), restored_.irq->take());
  EXPECT_EQ(original_.out->bytes_, restored_.out->bytes_);
  EXPECT_EQ(original_.serial.input_space(), restored_.serial.input_space());
}

TEST_F(SerialState, FreshUartRoundTripsItsResetState) {
  const devices::SerialState fresh = original_.serial.save();
  EXPECT_EQ(fresh, devices::SerialState{});
  ASSERT_TRUE(restored_.serial.restore(fresh));
  EXPECT_EQ(restored_.serial.save(), fresh);
}

TEST_F(SerialState, RefusesAFifoLongerThanItsCapacity) {
  drive_original();
  const devices::SerialState before = original_.serial.save();
  devices::SerialState bad;
  bad.rx_fifo.assign(kFifoSize + 1, 0x41);
  auto r = original_.serial.restore(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(r.error().message().find("FIFO"), std::string::npos) << r.error().message();
  EXPECT_EQ(original_.serial.save(), before) << "a refused state changes nothing";
}

TEST_F(SerialState, RefusesBitsA16550ALacks) {
  devices::SerialState bad_ier;
  bad_ier.ier = 0x10;
  EXPECT_FALSE(original_.serial.restore(bad_ier));
  devices::SerialState bad_mcr;
  bad_mcr.mcr = 0x20;
  EXPECT_FALSE(original_.serial.restore(bad_mcr));
  EXPECT_EQ(original_.serial.save(), devices::SerialState{});
}

}  // namespace
}  // namespace hvz::devices_test
