// ToyCode (see toy_kernel.hpp): the x86 encodings used, all valid in 32-bit
// protected mode with flat segments, and the minimal PVH ELF around them.
#include "guest-tests/support/toy_kernel.hpp"

#include <cstring>
#include <fstream>

namespace hvz::testing {
namespace {

// virtio-mmio registers (virtio 1.2 §4.2.2) and status bits.
constexpr std::uint32_t kDriverFeatures = 0x020;
constexpr std::uint32_t kDriverFeaturesSel = 0x024;
constexpr std::uint32_t kQueueSel = 0x030;
constexpr std::uint32_t kQueueNum = 0x038;
constexpr std::uint32_t kQueueReady = 0x044;
constexpr std::uint32_t kQueueNotify = 0x050;
constexpr std::uint32_t kStatus = 0x070;
constexpr std::uint32_t kQueueDescLow = 0x080;
constexpr std::uint32_t kQueueDescHigh = 0x084;
constexpr std::uint32_t kQueueDriverLow = 0x090;
constexpr std::uint32_t kQueueDriverHigh = 0x094;
constexpr std::uint32_t kQueueDeviceLow = 0x0a0;
constexpr std::uint32_t kQueueDeviceHigh = 0x0a4;
constexpr std::uint32_t kAcknowledge = 1, kDriver = 2, kDriverOk = 4, kFeaturesOk = 8;
constexpr std::uint32_t kQueueSize = 16;

// hvz's ACPI sleep control register and the S5 value its DSDT announces.
constexpr std::uint16_t kSleepControlPort = 0x600;
constexpr std::uint8_t kS5 = (5 << 2) | (1 << 5);  // SLP_TYP 5, SLP_EN

}  // namespace

void ToyCode::emit(std::initializer_list<std::uint8_t> bytes) {
  code_.insert(code_.end(), bytes);
}

void ToyCode::emit32(std::uint32_t v) {
  for (int i = 0; i < 4; ++i) code_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

ToyCode& ToyCode::store32(std::uint32_t addr, std::uint32_t value) {
  emit({0xc7, 0x05});  // mov dword [disp32], imm32
  emit32(addr);
  emit32(value);
  return *this;
}

ToyCode& ToyCode::out8(std::uint16_t port, std::uint8_t value) {
  emit({0x66, 0xba, static_cast<std::uint8_t>(port), static_cast<std::uint8_t>(port >> 8)});
  emit({0xb0, value, 0xee});  // mov al, imm8; out dx, al
  return *this;
}

ToyCode& ToyCode::out_string(std::uint16_t port, std::uint32_t addr, std::uint32_t count) {
  emit({0xbe});  // mov esi, imm32
  emit32(addr);
  emit({0xb9});  // mov ecx, imm32
  emit32(count);
  emit({0x66, 0xba, static_cast<std::uint8_t>(port), static_cast<std::uint8_t>(port >> 8)});
  emit({0xfc, 0xf3, 0x6e});  // cld; rep outsb
  return *this;
}

ToyCode& ToyCode::power_off() {
  return out8(kSleepControlPort, kS5).spin();
}

ToyCode& ToyCode::ud2() {
  emit({0x0f, 0x0b});
  return *this;
}

ToyCode& ToyCode::spin() {
  emit({0xeb, 0xfe});
  return *this;
}

ToyCode& ToyCode::busy_loop(std::uint32_t count) {
  emit({0xb9});  // mov ecx, imm32
  emit32(count);
  emit({0xe2, 0xfe});  // loop $
  return *this;
}

ToyCode& ToyCode::virtio_activate(std::uint32_t base, unsigned queues, std::uint32_t rings) {
  store32(base + kStatus, 0);
  store32(base + kStatus, kAcknowledge);
  store32(base + kStatus, kAcknowledge | kDriver);
  store32(base + kDriverFeaturesSel, 1);
  store32(base + kDriverFeatures, 1);  // VIRTIO_F_VERSION_1 (bit 32)
  store32(base + kDriverFeaturesSel, 0);
  store32(base + kDriverFeatures, 0);
  store32(base + kStatus, kAcknowledge | kDriver | kFeaturesOk);
  for (unsigned q = 0; q < queues; ++q) {
    const std::uint32_t desc = rings + q * 0x3000;
    store32(base + kQueueSel, q);
    store32(base + kQueueNum, kQueueSize);
    store32(base + kQueueDescLow, desc);
    store32(base + kQueueDescHigh, 0);
    store32(base + kQueueDriverLow, desc + 0x1000);
    store32(base + kQueueDriverHigh, 0);
    store32(base + kQueueDeviceLow, desc + 0x2000);
    store32(base + kQueueDeviceHigh, 0);
    store32(base + kQueueReady, 1);
  }
  store32(base + kStatus, kAcknowledge | kDriver | kFeaturesOk | kDriverOk);
  return *this;
}

ToyCode& ToyCode::virtio_blk_read(std::uint32_t base, std::uint32_t rings, std::uint32_t buffers) {
  const std::uint32_t header = buffers;
  const std::uint32_t payload = buffers + 0x100;
  const std::uint32_t status = buffers + 0x400;
  // Header: type 0 (IN), reserved, sector 0.
  store32(header, 0);
  store32(header + 4, 0);
  store32(header + 8, 0);
  store32(header + 12, 0);
  // Descriptors: header (read), 512 bytes of data (write), status (write).
  const std::uint32_t descs[3][4] = {
      {header, 16, 1, 1},    // addr, len, flags (NEXT), next
      {payload, 512, 3, 2},  // NEXT | WRITE
      {status, 1, 2, 0},     // WRITE
  };
  for (std::uint32_t i = 0; i < 3; ++i) {
    const std::uint32_t d = rings + 16 * i;
    store32(d, descs[i][0]);
    store32(d + 4, 0);
    store32(d + 8, descs[i][1]);
    store32(d + 12, descs[i][2] | (descs[i][3] << 16));
  }
  // Avail ring: flags 0, idx 1, ring[0] = head 0.
  store32(rings + 0x1000 + 4, 0);
  store32(rings + 0x1000, 1u << 16);
  store32(base + kQueueNotify, 0);
  return *this;
}

std::uint32_t ToyCode::data(const std::vector<std::uint8_t>& bytes) {
  const std::uint32_t at = kToyLoadAddress + kDataOffset + data_size_;
  data_.push_back(bytes);
  data_size_ += static_cast<std::uint32_t>(bytes.size());
  return at;
}

std::string ToyCode::write_elf(const std::string& path) const {
  constexpr std::size_t kCodeOffset = 0x1000;
  std::vector<std::uint8_t> image(code_);
  image.resize(kDataOffset, 0xcc);  // int3 after the code
  for (const auto& d : data_) image.insert(image.end(), d.begin(), d.end());
  std::vector<std::uint8_t> f(kCodeOffset + image.size(), 0);
  auto put = [&f](std::size_t at, std::uint64_t v, std::size_t n) {
    std::memcpy(f.data() + at, &v, n);
  };
  const std::uint8_t ident[] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
  std::memcpy(f.data(), ident, sizeof ident);
  put(16, 2, 2);                // ET_EXEC
  put(18, 62, 2);               // EM_X86_64
  put(20, 1, 4);                // EV_CURRENT
  put(24, kToyLoadAddress, 8);  // e_entry
  put(32, 0x40, 8);             // e_phoff
  put(52, 64, 2);               // e_ehsize
  put(54, 56, 2);               // e_phentsize
  put(56, 2, 2);                // e_phnum
  // PT_LOAD: code and data, read/write/execute.
  put(0x40, 1, 4);
  put(0x44, 7, 4);
  put(0x48, kCodeOffset, 8);
  put(0x50, kToyLoadAddress, 8);
  put(0x58, kToyLoadAddress, 8);
  put(0x60, image.size(), 8);
  put(0x68, image.size(), 8);
  put(0x70, 0x1000, 8);
  // PT_NOTE: XEN_ELFNOTE_PHYS32_ENTRY, the PVH entry point.
  put(0x78, 4, 4);
  put(0x80, 0x100, 8);
  put(0x98, 20, 8);
  put(0xa0, 20, 8);
  put(0xa8, 4, 8);
  put(0x100, 4, 4);   // namesz
  put(0x104, 4, 4);   // descsz
  put(0x108, 18, 4);  // type
  std::memcpy(f.data() + 0x10c, "Xen", 4);
  put(0x110, kToyLoadAddress, 4);
  std::memcpy(f.data() + kCodeOffset, image.data(), image.size());
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(f.data()), static_cast<std::streamsize>(f.size()));
  return path;
}

}  // namespace hvz::testing
