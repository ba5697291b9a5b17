// hvz-hello-vm: the demo microVM until hvz boots Linux. A real-mode guest
// prints a greeting through port 0x3f8 (the COM1 data port); every byte it
// writes there is shown on stdout, the way a serial console would be.
#include <cstdio>
#include <string_view>
#include <vector>

#include "guest-tests/support/realmode_vm.hpp"

namespace {

class ConsolePort : public hvz::BusDevice {
 public:
  void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
    // Line status register (offset 5): transmitter empty, so a guest that
    // polls before writing proceeds.
    for (auto& b : data) b = offset == 5 ? 0x60 : 0x00;
  }
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
    if (offset != 0) return;
    std::fwrite(data.data(), 1, data.size(), stdout);
  }
};

}  // namespace

int main() {
  constexpr std::string_view kMessage =
      "Hello from a real-mode guest: this text left the vCPU through port 0x3f8.\r\n";
  constexpr std::uint16_t kMessageAt = hvz::testing::RealModeVm::kLoadAddress + 0x20;
  std::vector<std::uint8_t> code = {
      0xbe,
      kMessageAt & 0xff,
      kMessageAt >> 8,  // mov si, message
      0xba,
      0xf8,
      0x03,  // mov dx, 0x3f8
      0xac,  // 1: lodsb
      0x84,
      0xc0,  // test al, al
      0x74,
      0x03,  // jz 2f
      0xee,  // out dx, al
      0xeb,
      0xf8,  // jmp 1b
      0xf4,  // 2: hlt
  };
  code.resize(0x20, 0x90);
  code.insert(code.end(), kMessage.begin(), kMessage.end());
  code.push_back(0);

  auto vm = hvz::testing::RealModeVm::create(code);
  if (!vm) {
    std::fprintf(stderr, "hvz-hello-vm: %s\n", vm.error().message().c_str());
    return 1;
  }
  hvz::Bus pio;
  if (!pio.insert(std::make_shared<ConsolePort>(), 0x3f8, 8)) return 1;
  auto result = vm->run(pio, 1000);
  if (!result) {
    std::fprintf(stderr, "hvz-hello-vm: %s\n", result.error().message().c_str());
    return 1;
  }
  std::fflush(stdout);
  const auto& last = result->exits.back();
  if (last.reason != KVM_EXIT_HLT) {
    std::fprintf(stderr, "hvz-hello-vm: guest stopped with %s\n",
                 hvz::exit_reason_name(last.reason).c_str());
    return 1;
  }
  std::fprintf(stderr, "hvz-hello-vm: guest halted after %zu exits\n", result->exits.size());
  return 0;
}
