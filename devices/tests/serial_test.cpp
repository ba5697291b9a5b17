// Serial: 16550A register behaviour, interrupts, FIFO, loopback and the
// probe sequence Linux's 8250 driver runs.
#include "devices/serial.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/tests/test_irq_line.hpp"

namespace hvz::devices_test {
namespace {

using namespace hvz::devices;

using namespace uart;
using devices::testing::CountingIrqLine;
using devices::testing::FailingIrqLine;

class RecordingOutput : public SerialOutput {
 public:
  void write(std::span<const std::uint8_t> bytes) override {
    bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
  }
  std::vector<std::uint8_t> bytes_;
};

class Serial : public ::testing::Test {
 protected:
  std::uint8_t rd(std::uint64_t offset) {
    std::uint8_t v = 0xee;
    serial_.read(offset, std::span<std::uint8_t>(&v, 1));
    return v;
  }
  void wr(std::uint64_t offset, std::uint8_t v) {
    serial_.write(offset, std::span<const std::uint8_t>(&v, 1));
  }
  std::size_t enqueue(std::vector<std::uint8_t> bytes) {
    auto r = serial_.enqueue_input(bytes);
    EXPECT_TRUE(r);
    return r ? *r : 0;
  }

  std::shared_ptr<CountingIrqLine> irq_ = std::make_shared<CountingIrqLine>();
  std::shared_ptr<RecordingOutput> out_ = std::make_shared<RecordingOutput>();
  devices::Serial serial_{irq_, out_};
};

TEST_F(Serial, RegistersHaveResetDefaults) {
  EXPECT_EQ(rd(kIer), 0x00);
  EXPECT_EQ(rd(kIir), kIirNone);  // no interrupt, FIFOs not yet enabled
  EXPECT_EQ(rd(kLcr), kDefaultLcr);
  EXPECT_EQ(rd(kMcr), kMcrOut2);
  EXPECT_EQ(rd(kLsr), kLsrThrEmpty | kLsrIdle);
  EXPECT_EQ(rd(kMsr), kMsrDcd | kMsrDsr | kMsrCts);
  EXPECT_EQ(rd(kScr), 0x00);
  EXPECT_EQ(rd(kData), 0x00);  // empty receiver
  wr(kLcr, kLcrDlab | kDefaultLcr);
  EXPECT_EQ(rd(kData), kDefaultDll);
  EXPECT_EQ(rd(kIer), kDefaultDlm);
  EXPECT_EQ(serial_.input_space(), kFifoSize);
  EXPECT_EQ(irq_->count(), 0u);
  EXPECT_TRUE(out_->bytes_.empty());
}

TEST_F(Serial, DlabRedirectsOffsetsZeroAndOneToTheDivisorLatch) {
  wr(kIer, kIerRda);
  wr(kLcr, kLcrDlab | 0x03);
  wr(kData, 0x01);  // DLL: 115200 baud
  wr(kIer, 0x02);   // DLM
  EXPECT_EQ(rd(kData), 0x01);
  EXPECT_EQ(rd(kIer), 0x02);
  EXPECT_TRUE(out_->bytes_.empty()) << "a DLL write must not transmit";
  wr(kLcr, 0x03);
  EXPECT_EQ(rd(kIer), kIerRda) << "IER kept while DLAB was set";
  wr(kData, 'x');
  EXPECT_EQ(out_->bytes_, std::vector<std::uint8_t>{'x'});
  wr(kLcr, kLcrDlab | 0x03);
  EXPECT_EQ(rd(kData), 0x01) << "the divisor survives DLAB toggles";
  EXPECT_EQ(rd(kIer), 0x02);
}

TEST_F(Serial, ScratchRegisterReadsBackEveryValue) {
  for (int v = 0; v < 256; ++v) {
    wr(kScr, static_cast<std::uint8_t>(v));
    ASSERT_EQ(rd(kScr), v);
  }
}

TEST_F(Serial, ThrBytesGoToTheSinkImmediatelyAndInOrder) {
  const std::vector<std::uint8_t> text = {'h', 'v', 'z', '\n', 0x00, 0xff};
  for (std::size_t i = 0; i < text.size(); ++i) {
    wr(kData, text[i]);
    ASSERT_EQ(out_->bytes_.size(), i + 1) << "byte " << i << " not passed on at once";
  }
  EXPECT_EQ(out_->bytes_, text);
  EXPECT_EQ(rd(kLsr) & (kLsrThrEmpty | kLsrIdle), kLsrThrEmpty | kLsrIdle);
}

TEST_F(Serial, RaisesIrqWhenThrEmptiesAndIerAllows) {
  wr(kData, 'a');
  EXPECT_EQ(irq_->take(), 0u) << "THRE interrupt not enabled yet";
  wr(kIer, kIerThre);
  EXPECT_EQ(irq_->take(), 1u) << "enabling THRE with THR empty raises it";
  EXPECT_EQ(rd(kIir), kIirThre);
  EXPECT_EQ(rd(kIir), kIirNone) << "reading IIR acknowledges THRE";
  wr(kData, 'b');
  EXPECT_EQ(irq_->take(), 1u) << "re-armed after a THR write";
  EXPECT_EQ(rd(kIir), kIirThre);
  EXPECT_EQ(irq_->take(), 0u);
}

TEST_F(Serial, ThreDoesNotRetriggerWhilePending) {
  wr(kIer, kIerThre);
  EXPECT_EQ(irq_->take(), 1u);
  for (char c : std::string("burst")) wr(kData, static_cast<std::uint8_t>(c));
  EXPECT_EQ(irq_->take(), 0u) << "still pending: no new edge";
  EXPECT_EQ(rd(kIir), kIirThre);
  wr(kData, '!');
  EXPECT_EQ(irq_->take(), 1u);
}

TEST_F(Serial, ThreReArmsOnlyWhenIerBitTurnsOn) {
  wr(kIer, kIerThre);
  EXPECT_EQ(rd(kIir), kIirThre);
  irq_->take();
  wr(kIer, kIerThre | kIerRda);  // bit already on: nothing new
  EXPECT_EQ(rd(kIir), kIirNone);
  wr(kIer, 0);
  wr(kIer, kIerThre);  // Linux's THRE probe: off, then on again
  EXPECT_EQ(rd(kIir), kIirThre);
  EXPECT_EQ(irq_->take(), 1u);
}

TEST_F(Serial, DisablingThreClearsItsPendingInterrupt) {
  wr(kIer, kIerThre);
  wr(kIer, 0);
  EXPECT_EQ(rd(kIir), kIirNone);
}

TEST_F(Serial, RdaHasPriorityOverThre) {
  wr(kIer, kIerThre | kIerRda);
  EXPECT_EQ(irq_->take(), 1u);
  EXPECT_EQ(enqueue({'1', '2'}), 2u);
  EXPECT_EQ(irq_->take(), 0u) << "line already up (THRE pending): no new edge";
  EXPECT_EQ(rd(kIir), kIirRda);
  EXPECT_EQ(rd(kIir), kIirRda) << "RDA stays until the data is read";
  EXPECT_EQ(rd(kData), '1');
  EXPECT_EQ(rd(kIir), kIirRda);
  EXPECT_EQ(rd(kData), '2');
  EXPECT_EQ(rd(kIir), kIirThre) << "THRE was hidden behind RDA, not lost";
  EXPECT_EQ(rd(kIir), kIirNone);
}

TEST_F(Serial, EnqueueRaisesRdaOnlyWhenEnabled) {
  EXPECT_EQ(enqueue({'a'}), 1u);
  EXPECT_EQ(irq_->take(), 0u);
  EXPECT_EQ(rd(kLsr) & kLsrDataReady, kLsrDataReady);
  EXPECT_EQ(rd(kIir), kIirNone);
  wr(kIer, kIerRda);
  EXPECT_EQ(irq_->take(), 1u) << "enabling RDA with data waiting raises it";
  EXPECT_EQ(rd(kIir), kIirRda);
  EXPECT_EQ(rd(kData), 'a');
  EXPECT_EQ(rd(kIir), kIirNone);
  EXPECT_EQ(enqueue({'b'}), 1u);
  EXPECT_EQ(irq_->take(), 1u) << "new data after the FIFO emptied: a new edge";
  EXPECT_EQ(enqueue({'c'}), 1u);
  EXPECT_EQ(irq_->take(), 0u) << "RDA still pending";
  EXPECT_EQ(enqueue({}), 0u);
  EXPECT_EQ(irq_->take(), 0u);
}

TEST_F(Serial, ReceiveFifoHoldsSixtyFourBytesAndKeepsOrder) {
  std::vector<std::uint8_t> input(100);
  for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<std::uint8_t>(i);
  EXPECT_EQ(enqueue(input), kFifoSize);
  EXPECT_EQ(serial_.input_space(), 0u);
  EXPECT_EQ(enqueue({0xaa}), 0u) << "full FIFO takes nothing";
  EXPECT_EQ(rd(kLsr) & kLsrOverrun, 0) << "host input is never overrun, just refused";
  EXPECT_EQ(rd(kData), 0);
  EXPECT_EQ(serial_.input_space(), 1u);
  EXPECT_EQ(enqueue({0xaa, 0xbb}), 1u);
  for (std::size_t i = 1; i < kFifoSize; ++i) ASSERT_EQ(rd(kData), i);
  EXPECT_EQ(rd(kData), 0xaa);
  EXPECT_EQ(rd(kLsr) & kLsrDataReady, 0);
  EXPECT_EQ(serial_.input_space(), kFifoSize);
}

TEST_F(Serial, LsrTracksDataReadyAndTransmitterEmpty) {
  EXPECT_EQ(rd(kLsr), kLsrThrEmpty | kLsrIdle);
  EXPECT_EQ(enqueue({'x', 'y'}), 2u);
  EXPECT_EQ(rd(kLsr), kLsrDataReady | kLsrThrEmpty | kLsrIdle);
  rd(kData);
  EXPECT_EQ(rd(kLsr) & kLsrDataReady, kLsrDataReady);
  rd(kData);
  EXPECT_EQ(rd(kLsr), kLsrThrEmpty | kLsrIdle);
  wr(kData, 'z');
  EXPECT_EQ(rd(kLsr), kLsrThrEmpty | kLsrIdle) << "THR never fills";
}

TEST_F(Serial, LoopbackSendsThrToTheReceiverAndMirrorsModemLines) {
  wr(kMcr, kMcrLoop | kMcrOut2 | kMcrRts);  // Linux's autoconfig value 0x1a
  EXPECT_EQ(rd(kMsr) & 0xf0, 0x90);
  wr(kMcr, kMcrLoop | kMcrDtr | kMcrOut1);
  EXPECT_EQ(rd(kMsr) & 0xf0, kMsrDsr | kMsrRi);
  wr(kMcr, kMcrLoop | 0x0f);
  EXPECT_EQ(rd(kMsr) & 0xf0, 0xf0);
  wr(kMcr, kMcrLoop);
  EXPECT_EQ(rd(kMsr) & 0xf0, 0x00);

  wr(kIer, kIerRda);
  wr(kData, 'L');
  EXPECT_TRUE(out_->bytes_.empty()) << "loopback bytes never reach the sink";
  EXPECT_EQ(irq_->take(), 1u);
  EXPECT_EQ(rd(kIir), kIirRda);
  EXPECT_EQ(serial_.input_space(), 0u);
  auto r = serial_.enqueue_input(std::vector<std::uint8_t>{'h'});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 0u) << "the receiver is disconnected from the line";
  EXPECT_EQ(rd(kData), 'L');
  EXPECT_EQ(rd(kLsr) & kLsrDataReady, 0);

  wr(kMcr, kMcrOut2);
  EXPECT_EQ(rd(kMsr), kDefaultMsr);
  wr(kData, 'T');
  EXPECT_EQ(out_->bytes_, std::vector<std::uint8_t>{'T'});
  EXPECT_EQ(serial_.input_space(), kFifoSize);
}

TEST_F(Serial, LoopbackOverflowDropsBytesAndReportsOverrun) {
  wr(kMcr, kMcrLoop);
  wr(kIer, kIerRls);
  for (int i = 0; i < 256; ++i) wr(kData, static_cast<std::uint8_t>(i));
  EXPECT_EQ(irq_->take(), 1u);
  EXPECT_EQ(rd(kIir), kIirRls);
  EXPECT_EQ(rd(kLsr), kLsrOverrun | kLsrDataReady | kLsrThrEmpty | kLsrIdle);
  EXPECT_EQ(rd(kLsr) & kLsrOverrun, 0) << "reading LSR clears OE";
  EXPECT_EQ(rd(kIir), kIirNone);
  int count = 0;
  while ((rd(kLsr) & kLsrDataReady) && count < 300) {
    ASSERT_EQ(rd(kData), count) << "the oldest bytes are kept";
    ++count;
  }
  EXPECT_EQ(count, static_cast<int>(kFifoSize));
}

// drivers/tty/serial/8250/8250_port.c: autoconfig() and
// autoconfig_16550a(), then the THRE test of serial8250_do_startup().
TEST_F(Serial, LinuxAutoconfigIdentifies16550A) {
  // Existence test through IER.
  const std::uint8_t saved_ier = rd(kIer);
  wr(kIer, 0);
  EXPECT_EQ(rd(kIer) & 0x0f, 0);
  wr(kIer, 0x0f);
  EXPECT_EQ(rd(kIer) & 0x0f, 0x0f);
  wr(kIer, saved_ier);
  // Loopback test.
  const std::uint8_t saved_mcr = rd(kMcr);
  wr(kMcr, kMcrLoop | 0x0a);
  EXPECT_EQ(rd(kMsr) & 0xf0, 0x90);
  wr(kMcr, saved_mcr);
  // FIFO type: EFR write under LCR 0xBF, then FCR enable.
  wr(kLcr, 0xbf);
  wr(kFcr, 0);
  wr(kLcr, 0);
  wr(kFcr, kFcrEnableFifo);
  EXPECT_EQ(rd(kIir) >> 6, 3) << "16550A: FIFOs enabled";
  // Not a 16650 (EFR under DLAB reads 0 there).
  wr(kLcr, 0x80);
  EXPECT_NE(rd(kIir), 0);
  wr(kLcr, 0xbf);
  EXPECT_NE(rd(kIir), 0);
  // Not a 16750 (no 64-byte FIFO bit in IIR).
  wr(kLcr, 0);
  wr(kFcr, kFcrEnableFifo | 0x20);
  EXPECT_EQ(rd(kIir) & 0xe0, 0xc0);
  wr(kLcr, 0x80);
  wr(kFcr, kFcrEnableFifo | 0x20);
  EXPECT_EQ(rd(kIir) & 0xe0, 0xc0);
  wr(kLcr, 0);
  // Not an XScale UART (IER bit 6 does not stick).
  wr(kIer, 0x40);
  EXPECT_EQ(rd(kIer) & 0x40, 0);
  wr(kIer, 0);
  // Startup: clear FIFOs, then THRE must re-assert when re-enabled.
  wr(kFcr, kFcrEnableFifo);
  wr(kFcr, kFcrEnableFifo | kFcrClearRx | kFcrClearTx);
  wr(kFcr, 0);
  wr(kFcr, kFcrEnableFifo);
  wr(kIer, kIerThre);
  const std::uint8_t iir1 = rd(kIir);
  wr(kIer, 0);
  wr(kIer, kIerThre);
  const std::uint8_t iir = rd(kIir);
  wr(kIer, 0);
  EXPECT_EQ(iir1 & kIirNone, 0);
  EXPECT_EQ(iir & kIirNone, 0) << "Linux would flag UART_BUG_THRE";
  EXPECT_EQ(iir, kIirFifoEnabled | kIirThre);
  EXPECT_TRUE(out_->bytes_.empty()) << "probing printed nothing";
}

TEST_F(Serial, FcrClearsTheReceiveFifo) {
  int drained = 0;
  serial_.set_input_drained_callback([&] { ++drained; });
  wr(kFcr, kFcrEnableFifo);
  EXPECT_EQ(enqueue({1, 2, 3}), 3u);
  wr(kFcr, kFcrEnableFifo | kFcrClearRx);
  EXPECT_EQ(rd(kLsr) & kLsrDataReady, 0);
  EXPECT_EQ(serial_.input_space(), kFifoSize);
  EXPECT_EQ(drained, 1);
  EXPECT_EQ(rd(kIir), kIirFifoEnabled | kIirNone);
  EXPECT_EQ(enqueue({4}), 1u);
  wr(kFcr, 0);  // turning FIFOs off empties them too
  EXPECT_EQ(rd(kLsr) & kLsrDataReady, 0);
  EXPECT_EQ(rd(kIir), kIirNone);
  EXPECT_EQ(drained, 2);
}

TEST_F(Serial, DrainedCallbackRunsWithoutTheLockAndMayEnqueue) {
  int calls = 0;
  serial_.set_input_drained_callback([&] {
    ++calls;
    if (calls == 1) {
      auto r = serial_.enqueue_input(std::vector<std::uint8_t>{'2'});
      EXPECT_TRUE(r && *r == 1u);
    }
  });
  EXPECT_EQ(enqueue({'1'}), 1u);
  EXPECT_EQ(rd(kData), '1');
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(rd(kData), '2');
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(rd(kData), 0);
  EXPECT_EQ(calls, 2) << "reading an empty FIFO drains nothing";
}

TEST_F(Serial, WideAccessUsesTheFirstByteAndZeroesTheRest) {
  wr(kScr, 0x5a);
  std::array<std::uint8_t, 4> buf = {1, 2, 3, 4};
  serial_.read(kScr, buf);
  EXPECT_EQ(buf, (std::array<std::uint8_t, 4>{0x5a, 0, 0, 0}));
  const std::array<std::uint8_t, 2> w = {'o', 'k'};
  serial_.write(kData, w);
  EXPECT_EQ(out_->bytes_, std::vector<std::uint8_t>{'o'});
  serial_.read(kScr, std::span<std::uint8_t>());  // empty: no crash
  serial_.write(kScr, std::span<const std::uint8_t>());
  EXPECT_EQ(rd(kScr), 0x5a);
}

TEST_F(Serial, UnknownOffsetsAndReadOnlyRegistersAreHarmless) {
  EXPECT_EQ(rd(8), 0);
  EXPECT_EQ(rd(~std::uint64_t{0}), 0);
  wr(8, 0xff);
  wr(~std::uint64_t{0}, 0xff);
  wr(kLsr, 0xff);
  wr(kMsr, 0x00);
  EXPECT_EQ(rd(kLsr), kLsrThrEmpty | kLsrIdle);
  EXPECT_EQ(rd(kMsr), kDefaultMsr);
  wr(kIer, 0xff);
  EXPECT_EQ(rd(kIer), kIerMask);
  wr(kMcr, 0xff);
  EXPECT_EQ(rd(kMcr), kMcrMask);
  EXPECT_TRUE(out_->bytes_.empty());
}

TEST_F(Serial, NullIrqAndSinkAreHarmless) {
  devices::Serial serial(nullptr, nullptr);
  const std::uint8_t ier = kIerThre | kIerRda;
  serial.write(kIer, std::span<const std::uint8_t>(&ier, 1));
  const std::uint8_t c = 'x';
  serial.write(kData, std::span<const std::uint8_t>(&c, 1));
  auto r = serial.enqueue_input(std::vector<std::uint8_t>{'y'});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 1u);
}

TEST_F(Serial, EnqueueReportsAFailingIrqLineButKeepsTheBytes) {
  auto irq = std::make_shared<FailingIrqLine>();
  devices::Serial serial(irq, nullptr);
  const std::uint8_t ier = kIerRda;
  serial.write(kIer, std::span<const std::uint8_t>(&ier, 1));
  auto r = serial.enqueue_input(std::vector<std::uint8_t>{'a', 'b'});
  EXPECT_FALSE(r);
  EXPECT_EQ(irq->attempts.load(), 1);
  EXPECT_EQ(serial.input_space(), kFifoSize - 2);
  std::uint8_t v = 0;
  serial.read(kData, std::span<std::uint8_t>(&v, 1));  // a failing line is only logged here
  EXPECT_EQ(v, 'a');
}

TEST_F(Serial, ConcurrentHostInputAndGuestReadsLoseNothing) {
  auto irq = std::make_shared<CountingIrqLine>();
  devices::Serial serial(irq, nullptr);
  const std::uint8_t ier = kIerRda;
  serial.write(kIer, std::span<const std::uint8_t>(&ier, 1));
  constexpr int kTotal = 20000;
  std::atomic<bool> stop{false};
  std::atomic<bool> enqueue_failed{false};
  std::thread host([&] {
    int sent = 0;
    while (sent < kTotal && !stop) {
      const auto byte = static_cast<std::uint8_t>(sent);
      auto r = serial.enqueue_input(std::span<const std::uint8_t>(&byte, 1));
      if (!r) {
        enqueue_failed = true;
        return;
      }
      if (*r == 1) {
        ++sent;
      } else {
        std::this_thread::yield();
      }
    }
  });
  int received = 0;
  while (received < kTotal && !enqueue_failed) {
    std::uint8_t lsr = 0;
    serial.read(kLsr, std::span<std::uint8_t>(&lsr, 1));
    if (!(lsr & kLsrDataReady)) {
      std::this_thread::yield();
      continue;
    }
    std::uint8_t v = 0;
    serial.read(kData, std::span<std::uint8_t>(&v, 1));
    if (v != static_cast<std::uint8_t>(received)) {
      ADD_FAILURE() << "byte " << received << " read as " << int{v};
      break;
    }
    ++received;
  }
  stop = true;
  host.join();
  EXPECT_FALSE(enqueue_failed);
  EXPECT_EQ(received, kTotal);
  EXPECT_EQ(serial.input_space(), kFifoSize);
  EXPECT_GE(irq->count(), 1u);
}

}  // namespace
}  // namespace hvz::devices_test
