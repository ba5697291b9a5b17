// VmSnapshot: everything a paused VM's snapshot state file holds apart from
// guest memory (which goes to its own file, laid out as `memory` says), and
// the file format that carries it.
//
// The file, all integers little-endian:
//   offset 0   magic "HVZSNAP\0" (8 bytes)
//   offset 8   format version, u32 (VmSnapshot::kVersion)
//   offset 12  payload length N, u64
//   offset 20  payload: the encoded VmSnapshot (N bytes)
//   offset 20+N  CRC-64 (ECMA-182, as xz computes it) of bytes [0, 20+N), u64
// and nothing after it. The payload is the VmSnapshot's fields in
// declaration order; each part's state is a section that starts with its
// own version (see state_codec.hpp).
//
// Decoding trusts nothing: lengths are bounded, every byte is accounted for,
// and vCPU and VM states that validate() refuses are refused, as is a
// snapshot from another architecture (its kernel structs are raw bytes).
// Whether the snapshot fits this host otherwise is the restore's question
// (check_host_compat).
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "devices/acpi_pm.hpp"
#include "devices/cmos_rtc.hpp"
#include "devices/i8042.hpp"
#include "devices/serial.hpp"
#include "virtio/block/block_device.hpp"
#include "virtio/console/console_device.hpp"
#include "virtio/mmio_transport.hpp"
#include "virtio/net/net_device.hpp"
#include "virtio/rng/rng_device.hpp"
#include "vmm/core/error.hpp"
#include "vmm/x86_64/vcpu_state.hpp"
#include "vmm/x86_64/vm_state.hpp"

namespace hvz::snapshot {

inline constexpr std::array<std::byte, 8> kMagic = {std::byte{'H'}, std::byte{'V'}, std::byte{'Z'},
                                                    std::byte{'S'}, std::byte{'N'}, std::byte{'A'},
                                                    std::byte{'P'}, std::byte{0}};
inline constexpr std::size_t kHeaderSize = 20;  // magic, version, length
inline constexpr std::size_t kTrailerSize = 8;  // the CRC-64
// Architecture tags are ELF e_machine numbers.
inline constexpr std::uint32_t kArchX86_64 = 62;  // EM_X86_64

namespace limits {
inline constexpr std::size_t kMemoryRegions = 16;
inline constexpr std::size_t kVirtioSlots = 24;  // one IOAPIC pin each at most
inline constexpr std::size_t kVmConfigBytes = 1u << 20;
}  // namespace limits

// The facts a restore compares with the host it runs on before it creates
// anything (check_host_compat).
struct HostCompat {
  std::uint32_t arch = kArchX86_64;
  std::uint32_t kvm_api_version = 0;  // KVM_GET_API_VERSION (12)
  // As the vCPUs saw them (vCPU 0's CPUID, leaves 0 and 1): the vendor
  // string (EBX, EDX, ECX of leaf 0) and leaf 1's EAX (stepping, model,
  // family and their extended fields).
  std::array<char, 12> cpu_vendor{};
  std::uint32_t cpu_signature = 0;
  bool operator==(const HostCompat&) const = default;
};

// The block for vCPUs given `cpuid` on a KVM answering `kvm_api_version`;
// a leaf missing from `cpuid` leaves its fields zero.
HostCompat host_compat(std::span<const kvm_cpuid_entry2> cpuid, std::uint32_t kvm_api_version);

// What a restore checks: the same architecture (the kernel structs are
// raw), the same KVM API version, the same CPU vendor and the same CPU
// family and model (the guest's CPUID, MSRs and XSAVE layout were those of
// that CPU). The stepping may differ. Errc::kUnsupported naming both sides
// otherwise. Whether KVM takes the saved CPUID and MSRs is KVM's to say.
Expected<void> check_host_compat(const HostCompat& saved, const HostCompat& host);

// One guest RAM region and where its bytes are in the memory file.
struct MemoryRegion {
  std::uint64_t guest_address = 0;
  std::uint64_t size = 0;
  std::uint64_t file_offset = 0;
  bool operator==(const MemoryRegion&) const = default;
};

// The legacy devices on port I/O; every hvz VM has each of them.
struct PioDeviceStates {
  devices::SerialState serial;
  devices::I8042State i8042;
  devices::CmosRtcState rtc;
  devices::AcpiPmState acpi_pm;
  bool operator==(const PioDeviceStates&) const = default;
};

// A virtio device's own state, tagged in the file by its virtio device
// type (1 net, 2 block, 3 console, 4 rng).
using VirtioDeviceState =
    std::variant<virtio::block::BlockDeviceState, virtio::net::NetDeviceState,
                 virtio::console::ConsoleDeviceState, virtio::rng::RngDeviceState>;

// One virtio-mmio slot: its window, its interrupt, the transport and the
// device. Decoding checks that the transport's device type is the
// device's.
struct VirtioSlotState {
  std::uint64_t mmio_base = 0;
  std::uint64_t mmio_size = 0;
  std::uint32_t gsi = 0;
  virtio::MmioTransportState transport;
  VirtioDeviceState device;
  bool operator==(const VirtioSlotState&) const = default;
};

// The virtio device type of `device` (virtio/virtio_device.hpp's constants).
std::uint32_t device_type(const VirtioDeviceState& device);
// The id the configuration knows the device by: drive_id, iface_id, or
// empty for the console and rng (one of each at most).
std::string_view device_id(const VirtioDeviceState& device);

struct VmSnapshot {
  // The file format version; a change to any section's layout or version
  // is a new format version.
  static constexpr std::uint32_t kVersion = 1;

  HostCompat host;
  // Ascending guest addresses, no overlap, each size > 0, file ranges
  // disjoint and not wrapping around.
  std::vector<MemoryRegion> memory;
  x86_64::VmState vm;
  std::vector<x86_64::VcpuState> vcpus;  // vCPU i at index i; 1..kMaxVcpus
  PioDeviceStates pio;
  std::vector<VirtioSlotState> virtio;  // in slot order
  // The VM's configuration as the API layer serialises it (JSON); opaque
  // here.
  std::vector<std::uint8_t> vm_config;

  bool operator==(const VmSnapshot&) const = default;
};

// The whole file's bytes. A snapshot that decode_snapshot would refuse
// (e.g. more vCPUs than limits allow) encodes all the same.
std::vector<std::byte> encode_snapshot(const VmSnapshot& snapshot);

// The container around an encoded payload: header (this hvz's format
// version, the payload's length), payload, CRC-64. encode_snapshot is
// encode_container of the encoded VmSnapshot; tests and the fuzz harness
// use it to wrap payloads of their own.
std::vector<std::byte> encode_container(std::span<const std::byte> payload);

// The snapshot in `file`, which must be exactly one snapshot file.
// Errc::kInvalidArgument: "not an hvz snapshot" (wrong magic), "snapshot
// format version N is not supported (this hvz reads M)", "snapshot
// checksum mismatch (corrupt or truncated)", or a message naming the
// section and field that is truncated, out of bounds or invalid.
Expected<VmSnapshot> decode_snapshot(std::span<const std::byte> file);

// Writes the file atomically: to a temporary file beside `path` (mode
// 0600), fsync, rename over `path`, fsync of the directory. On failure
// `path` is untouched and the temporary file removed.
Expected<void> write_snapshot_file(const std::string& path, const VmSnapshot& snapshot);

// Reads and decodes `path`, refusing (Errc::kOutOfRange) a file larger than
// `max_size` bytes before reading it.
Expected<VmSnapshot> read_snapshot_file(const std::string& path, std::uint64_t max_size);

}  // namespace hvz::snapshot
