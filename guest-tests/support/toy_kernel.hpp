// Toy kernels for guest tests that need a guest doing one precise thing
// (bring virtio devices up, write to a port, power off, triple fault)
// without booting Linux: 32-bit code assembled by hand into an ELF with a
// PVH note, entered by hvz in flat protected mode with paging off, so
// every address is physical. Seconds instead of a Linux boot.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hvz::testing {

// Where ToyCode is loaded and entered; its data follows the code.
inline constexpr std::uint32_t kToyLoadAddress = 0x200000;

class ToyCode {
 public:
  // mov dword [addr], value
  ToyCode& store32(std::uint32_t addr, std::uint32_t value);
  // mov dx, port; mov al, value; out dx, al
  ToyCode& out8(std::uint16_t port, std::uint8_t value);
  // Writes `count` bytes starting at `addr` to `port` (rep outsb).
  ToyCode& out_string(std::uint16_t port, std::uint32_t addr, std::uint32_t count);
  // Powers off through the ACPI sleep control register (S5).
  ToyCode& power_off();
  // ud2: with hvz's empty boot IDT this ends in a triple fault.
  ToyCode& ud2();
  // jmp $
  ToyCode& spin();
  // mov ecx, count; loop $ (a busy wait of `count` iterations)
  ToyCode& busy_loop(std::uint32_t count);

  // Drives the virtio-mmio device at `base` to DRIVER_OK with `queues`
  // queues of 16 entries laid out from `rings` (3 pages per queue:
  // descriptors, avail, used), accepting only VIRTIO_F_VERSION_1.
  ToyCode& virtio_activate(std::uint32_t base, unsigned queues, std::uint32_t rings);
  // Posts one virtio-blk read of sector 0 on the queue activated at
  // `rings` and notifies the device at `base`; buffers at `buffers`.
  ToyCode& virtio_blk_read(std::uint32_t base, std::uint32_t rings, std::uint32_t buffers);

  // Appends `bytes` after the code (at load time); returns their address.
  std::uint32_t data(const std::vector<std::uint8_t>& bytes);

  // The ELF image (PT_LOAD of code and data at kToyLoadAddress, and the
  // PVH entry note) written to `path`; returns `path`.
  std::string write_elf(const std::string& path) const;

 private:
  void emit(std::initializer_list<std::uint8_t> bytes);
  void emit32(std::uint32_t v);
  std::vector<std::uint8_t> code_;
  std::vector<std::vector<std::uint8_t>> data_;
  std::uint32_t data_size_ = 0;
  // Data lives this far into the image, after any code.
  static constexpr std::uint32_t kDataOffset = 0x10000;
};

}  // namespace hvz::testing
