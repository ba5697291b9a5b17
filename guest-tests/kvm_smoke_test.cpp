// KVM smoke tests: a real vCPU runs hand-assembled real-mode code that does
// port I/O, touches unmapped memory and halts; the tests check the exits
// KVM reports and what the bus devices saw. They need a usable /dev/kvm
// (run them through scripts/kvm-run).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "guest-tests/support/realmode_vm.hpp"

namespace hvz::testing {
namespace {

// Records writes; every read returns `value_`.
class PortDevice : public BusDevice {
 public:
  explicit PortDevice(std::uint8_t value = 0) : value_(value) {}
  void read(std::uint64_t, std::span<std::uint8_t> data) override {
    ++reads;
    for (auto& b : data) b = value_;
  }
  void write(std::uint64_t, std::span<const std::uint8_t> data) override {
    written.insert(written.end(), data.begin(), data.end());
  }
  std::vector<std::uint8_t> written;
  int reads = 0;

 private:
  std::uint8_t value_;
};

// 16-bit real-mode encodings used below.
constexpr std::uint8_t kMovDx = 0xba;  // mov dx, imm16
constexpr std::uint8_t kMovAl = 0xb0;  // mov al, imm8
constexpr std::uint8_t kMovCx = 0xb9;  // mov cx, imm16
constexpr std::uint8_t kOutDxAl = 0xee;
constexpr std::uint8_t kInAlDx = 0xec;
constexpr std::uint8_t kLoop = 0xe2;  // loop rel8
constexpr std::uint8_t kHlt = 0xf4;

TEST(KvmSmoke, PortIoReachesBusDevicesAndHltStops) {
  const std::vector<std::uint8_t> code = {
      kMovDx,   0xf8, 0x03,                                                 // dx = 0x3f8
      kMovAl,   'H',  kOutDxAl, kMovAl, 'i', kOutDxAl, kMovDx, 0x10, 0x05,  // dx = 0x510
      kInAlDx,                                                              // al = device value
      0xfe,     0xc0,                                                       // inc al
      kOutDxAl,                                                             // echo it back
      kHlt,
  };
  auto vm = RealModeVm::create(code);
  ASSERT_TRUE(vm) << vm.error().message();
  Bus pio;
  auto serial = std::make_shared<PortDevice>();
  auto echo = std::make_shared<PortDevice>(0x41);
  ASSERT_TRUE(pio.insert(serial, 0x3f8, 8));
  ASSERT_TRUE(pio.insert(echo, 0x510, 1));

  auto result = vm->run(pio, 100);
  ASSERT_TRUE(result) << result.error().message();
  ASSERT_EQ(result->exits.size(), 5u);
  EXPECT_EQ(result->exits[0].reason, KVM_EXIT_IO);
  EXPECT_EQ(result->exits[0].address, 0x3f8u);
  EXPECT_TRUE(result->exits[0].write);
  EXPECT_EQ(result->exits[2].reason, KVM_EXIT_IO);
  EXPECT_FALSE(result->exits[2].write);
  EXPECT_EQ(result->exits[2].address, 0x510u);
  EXPECT_EQ(result->exits[4].reason, KVM_EXIT_HLT) << exit_reason_name(result->exits[4].reason);
  EXPECT_EQ(serial->written, (std::vector<std::uint8_t>{'H', 'i'}));
  EXPECT_EQ(echo->reads, 1);
  EXPECT_EQ(echo->written, (std::vector<std::uint8_t>{0x42}));
  // RIP points past the HLT, the last byte of the code.
  EXPECT_EQ(result->rip, RealModeVm::kLoadAddress + code.size());
}

TEST(KvmSmoke, UnmappedPortReadsAllOnes) {
  const std::vector<std::uint8_t> code = {
      kMovDx, 0x00, 0x06, kInAlDx,         // al = in 0x600 (nothing there)
      kMovDx, 0x10, 0x05, kOutDxAl, kHlt,  // out 0x510, al
  };
  auto vm = RealModeVm::create(code);
  ASSERT_TRUE(vm) << vm.error().message();
  Bus pio;
  auto echo = std::make_shared<PortDevice>();
  ASSERT_TRUE(pio.insert(echo, 0x510, 1));
  auto result = vm->run(pio, 100);
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(echo->written, (std::vector<std::uint8_t>{0xff}));
  EXPECT_EQ(result->exits.back().reason, KVM_EXIT_HLT);
}

TEST(KvmSmoke, StoreOutsideRamIsAnMmioExit) {
  const std::vector<std::uint8_t> code = {
      0xc6, 0x06, 0x00, 0x80, 0x5a,  // mov byte [0x8000], 0x5a  (DS base 0)
      kHlt,
  };
  // Only 64 KiB is RAM, so map nothing at 0x8000 by moving DS up to 0xf000:
  // 0xf0000 + 0x8000 is outside guest memory.
  std::vector<std::uint8_t> prog = {0xb8, 0x00, 0xf0, 0x8e, 0xd8};  // mov ax,0xf000; mov ds,ax
  prog.insert(prog.end(), code.begin(), code.end());
  auto vm = RealModeVm::create(prog);
  ASSERT_TRUE(vm) << vm.error().message();
  Bus pio;
  auto result = vm->run(pio, 100);
  ASSERT_TRUE(result) << result.error().message();
  ASSERT_EQ(result->exits.size(), 1u);
  EXPECT_EQ(result->exits[0].reason, KVM_EXIT_MMIO) << exit_reason_name(result->exits[0].reason);
  EXPECT_EQ(result->exits[0].address, 0xf8000u);
  EXPECT_TRUE(result->exits[0].write);
}

TEST(KvmSmoke, MeasuresCostPerExit) {
  constexpr std::uint16_t kOuts = 20000;
  const std::vector<std::uint8_t> code = {
      kMovDx,
      0x80,
      0x00,  // dx = 0x80
      kMovCx,
      static_cast<std::uint8_t>(kOuts & 0xff),
      static_cast<std::uint8_t>(kOuts >> 8),
      kOutDxAl,
      kLoop,
      0xfd,  // 1: out dx, al; loop 1b
      kHlt,
  };
  auto vm = RealModeVm::create(code);
  ASSERT_TRUE(vm) << vm.error().message();
  Bus pio;
  auto sink = std::make_shared<PortDevice>();
  ASSERT_TRUE(pio.insert(sink, 0x80, 1));
  auto start = std::chrono::steady_clock::now();
  auto result = vm->run(pio, kOuts + 10);
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(result) << result.error().message();
  ASSERT_EQ(result->exits.size(), kOuts + 1u);
  EXPECT_EQ(result->exits.back().reason, KVM_EXIT_HLT);
  EXPECT_EQ(sink->written.size(), kOuts);
  const double us = std::chrono::duration<double, std::micro>(elapsed).count();
  const double per_exit = us / static_cast<double>(result->exits.size());
  std::printf("kvm smoke: %zu exits in %.1f ms: %.2f us per exit\n", result->exits.size(),
              us / 1000.0, per_exit);
  RecordProperty("us_per_exit", std::to_string(per_exit));
}

}  // namespace
}  // namespace hvz::testing
