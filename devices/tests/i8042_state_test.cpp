// I8042State: save() captures the control register, output port, pending
// command and output buffer; restore() into a fresh controller rebuilds one
// that answers the next accesses exactly as the original; malformed states
// are refused.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>

#include "devices/i8042.hpp"
#include "devices/tests/test_irq_line.hpp"

namespace hvz::devices_test {
namespace {

using namespace hvz::devices;
using namespace i8042;
using devices::testing::CountingIrqLine;

struct Controller {
  int resets = 0;
  std::shared_ptr<CountingIrqLine> irq = std::make_shared<CountingIrqLine>();
  devices::I8042 dev{[this] { ++resets; }, irq};

  std::uint8_t rd(std::uint64_t offset) {
    std::uint8_t v = 0xee;
    dev.read(offset, std::span<std::uint8_t>(&v, 1));
    return v;
  }
  void wr(std::uint64_t offset, std::uint8_t v) {
    dev.write(offset, std::span<const std::uint8_t>(&v, 1));
  }
};

class I8042State : public ::testing::Test {
 protected:
  // A controller mid-conversation: custom CTR and output port, keyboard
  // disabled, two Ctrl-Alt-Del bytes still unread, and a "write output
  // port" command waiting for its parameter.
  void drive_original() {
    Controller& c = original_;
    c.wr(kCommandOffset, kCmdWriteCtr);
    c.wr(kDataOffset, kCtrKbdInt | kCtrSystemFlag | kCtrAuxDisable);
    c.wr(kCommandOffset, kCmdKbdDisable);
    ASSERT_TRUE(c.dev.trigger_ctrl_alt_del());
    EXPECT_EQ(c.rd(kDataOffset), kCtrlAltDel[0]);
    EXPECT_EQ(c.rd(kDataOffset), kCtrlAltDel[1]);
    c.wr(kCommandOffset, kCmdWriteOutputPort);
  }

  std::uint8_t rd_both(std::uint64_t offset) {
    const std::uint8_t a = original_.rd(offset);
    const std::uint8_t b = restored_.rd(offset);
    EXPECT_EQ(a, b) << "offset " << offset;
    return a;
  }
  void wr_both(std::uint64_t offset, std::uint8_t v) {
    original_.wr(offset, v);
    restored_.wr(offset, v);
  }

  Controller original_;
  Controller restored_;
};

TEST_F(I8042State, SaveRestoreSaveRoundTripsEveryField) {
  drive_original();
  const devices::I8042State saved = original_.dev.save();
  EXPECT_EQ(saved.ctr, kCtrKbdInt | kCtrSystemFlag | kCtrAuxDisable | kCtrKbdDisable);
  EXPECT_EQ(saved.pending_command, kCmdWriteOutputPort);
  EXPECT_TRUE(saved.last_write_command);
  EXPECT_EQ(saved.output_buffer, (std::vector<std::uint8_t>{kCtrlAltDel[2], kCtrlAltDel[3]}));

  ASSERT_TRUE(restored_.dev.restore(saved));
  EXPECT_EQ(restored_.dev.save(), saved);
  EXPECT_EQ(restored_.irq->count(), 0u) << "restore sends no interrupt";
}

TEST_F(I8042State, RestoredControllerAnswersLikeTheOriginal) {
  drive_original();
  ASSERT_TRUE(restored_.dev.restore(original_.dev.save()));
  original_.irq->take();

  EXPECT_EQ(rd_both(kCommandOffset),
            kStatusKbdUnlocked | kStatusOutputFull | kStatusSystemFlag | kStatusCommand);
  wr_both(kDataOffset, 0x01);  // the pending command's parameter: output port
  EXPECT_EQ(rd_both(kDataOffset), kCtrlAltDel[2]);
  EXPECT_EQ(rd_both(kDataOffset), kCtrlAltDel[3]);
  EXPECT_EQ(rd_both(kDataOffset), 0x00);  // empty
  wr_both(kCommandOffset, kCmdReadOutputPort);
  EXPECT_EQ(rd_both(kDataOffset), 0x01);
  wr_both(kCommandOffset, kCmdReadCtr);
  rd_both(kCommandOffset);
  rd_both(kDataOffset);
  wr_both(kDataOffset, 0xff);  // a keyboard command: acked with IRQ 1
  EXPECT_EQ(rd_both(kDataOffset), kKbdAck);
  wr_both(kCommandOffset, kCmdResetCpu);
  EXPECT_EQ(original_.resets, 1);
  EXPECT_EQ(restored_.resets, 1);
  EXPECT_EQ(original_.irq->take(), restored_.irq->take());
  EXPECT_EQ(original_.dev.save(), restored_.dev.save());
}

TEST_F(I8042State, FreshControllerRoundTripsItsResetState) {
  const devices::I8042State fresh = original_.dev.save();
  EXPECT_EQ(fresh, devices::I8042State{});
  ASSERT_TRUE(restored_.dev.restore(fresh));
  EXPECT_EQ(restored_.dev.save(), fresh);
}

TEST_F(I8042State, RefusesABufferLongerThanItsCapacity) {
  drive_original();
  const devices::I8042State before = original_.dev.save();
  devices::I8042State bad;
  bad.output_buffer.assign(kBufferSize + 1, 0xaa);
  auto r = original_.dev.restore(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(original_.dev.save(), before) << "a refused state changes nothing";
}

TEST_F(I8042State, RefusesAPendingCommandThatTakesNoParameter) {
  devices::I8042State bad;
  bad.pending_command = kCmdSelfTest;
  auto r = original_.dev.restore(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(original_.dev.save(), devices::I8042State{});
}

}  // namespace
}  // namespace hvz::devices_test
