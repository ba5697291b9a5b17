// Populated instances of every state a snapshot holds, each field set to a
// value other than its default (kernel structs filled with a byte pattern),
// for the format's round-trip tests and the fuzz seeds.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "vmm/snapshot/snapshot.hpp"

namespace hvz::snapshot::samples {

// Fills `value`'s bytes with a pattern that depends on `seed` and has no
// zero byte.
template <typename T>
void fill_bytes(T& value, std::uint8_t seed) {
  static_assert(std::is_trivially_copyable_v<T>);
  auto* bytes = reinterpret_cast<std::uint8_t*>(&value);
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    bytes[i] = static_cast<std::uint8_t>(1 + (seed + i * 31) % 255);
  }
}

template <typename T>
T filled(std::uint8_t seed) {
  T value;
  fill_bytes(value, seed);
  return value;
}

inline std::uint32_t four_chars(std::string_view s) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i)
    v |= std::uint32_t{static_cast<std::uint8_t>(s[i])} << (8 * i);
  return v;
}

// vCPU `id` of a GenuineIntel family 6 model 0x8e stepping 0xc CPU.
inline x86_64::VcpuState sample_vcpu(std::uint8_t id) {
  x86_64::VcpuState s;
  kvm_cpuid_entry2 vendor = filled<kvm_cpuid_entry2>(id);
  vendor.function = 0;
  vendor.index = 0;
  vendor.ebx = four_chars("Genu");
  vendor.edx = four_chars("ineI");
  vendor.ecx = four_chars("ntel");
  kvm_cpuid_entry2 signature = filled<kvm_cpuid_entry2>(id + 1);
  signature.function = 1;
  signature.index = 0;
  signature.eax = 0x000806ec;
  s.cpuid = {vendor, signature, filled<kvm_cpuid_entry2>(id + 2)};
  s.msrs = {{x86_64::msr::kTsc, 123456789u + id},
            {x86_64::msr::kApicBase, 0xfee00900},
            {x86_64::msr::kTscDeadline, 0}};
  s.regs = filled<kvm_regs>(id + 3);
  s.sregs = filled<kvm_sregs>(id + 4);
  s.xsave.resize(4096 / sizeof(std::uint32_t));
  for (std::size_t i = 0; i < s.xsave.size(); ++i) {
    s.xsave[i] = static_cast<std::uint32_t>(i * 2654435761u + id);
  }
  s.xcrs = filled<kvm_xcrs>(id + 5);
  s.debugregs = filled<kvm_debugregs>(id + 6);
  s.lapic = filled<kvm_lapic_state>(id + 7);
  s.mp_state = filled<kvm_mp_state>(id + 8);
  s.events = filled<kvm_vcpu_events>(id + 9);
  s.tsc_khz = 2'400'000;
  return s;
}

inline x86_64::VmState sample_vm() {
  x86_64::VmState s;
  s.pic_master = filled<kvm_irqchip>(20);
  s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  s.pic_slave = filled<kvm_irqchip>(21);
  s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  s.ioapic = filled<kvm_irqchip>(22);
  s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  s.pit = filled<kvm_pit_state2>(23);
  s.clock = filled<kvm_clock_data>(24);
  return s;
}

inline devices::SerialState sample_serial() {
  return {.dll = 0x01,
          .dlm = 0x01,
          .ier = 0x0f,
          .lcr = 0x1b,
          .mcr = 0x1f,
          .scr = 0x5a,
          .fifo_enabled = true,
          .thre_pending = true,
          .overrun = true,
          .rx_fifo = {'h', 'v', 'z'}};
}

inline devices::I8042State sample_i8042() {
  return {.ctr = 0x47,
          .output_port = 0x01,
          .pending_command = 0xd1,
          .last_write_command = true,
          .output_buffer = {0xfa, 0xaa}};
}

inline devices::CmosRtcState sample_rtc() {
  devices::CmosRtcState s{.index = 0x0b, .nmi_disabled = true, .clock_offset_seconds = -3600};
  fill_bytes(s.ram, 30);
  return s;
}

inline devices::AcpiPmState sample_acpi_pm() {
  return {.s5_sleep_type = 5, .reset_value = 0x0f};
}

inline virtio::QueueState sample_queue(std::uint16_t n) {
  return {.max_size = 256,
          .size = static_cast<std::uint16_t>(64 + n),
          .ready = true,
          .desc_table = 0x100000 + n * 0x10000u,
          .avail_ring = 0x101000 + n * 0x10000u,
          .used_ring = 0x102000 + n * 0x10000u,
          .features = (1ull << 29) | (1ull << 28),
          .next_avail = static_cast<std::uint16_t>(700 + n),
          .next_used = static_cast<std::uint16_t>(650 + n),
          .signalled_used = static_cast<std::uint16_t>(640 + n),
          .signalled_used_valid = true,
          .broken = true};
}

inline virtio::MmioTransportState sample_transport(std::uint32_t device_type, std::size_t queues) {
  virtio::MmioTransportState s;
  s.device_type = device_type;
  s.status = 0x0f;
  s.device_features_sel = 1;
  s.driver_features_sel = 1;
  s.driver_features = (1ull << 32) | 0x30;
  s.driver_features_beyond_64 = true;
  s.queue_sel = 1;
  s.interrupt_status = 1;
  s.needs_reset = true;
  s.config_generation = 3;
  s.activated = true;
  for (std::size_t i = 0; i < queues; ++i) s.queues.push_back(sample_queue(std::uint16_t(i)));
  return s;
}

inline virtio::block::BlockDeviceState sample_block() {
  virtio::block::BlockDeviceState s;
  s.disk_path = "/images/rootfs.ext4";
  s.drive_id = "rootfs";
  s.read_only = true;
  s.capacity_sectors = 2048;
  s.acked_features = (1ull << 32) | (1ull << 5);
  fill_bytes(s.config, 40);
  s.activated = true;
  return s;
}

inline virtio::net::NetDeviceState sample_net() {
  virtio::net::NetDeviceState s;
  s.iface_id = "eth0";
  s.mac = virtio::net::MacAddress{0x06, 0x00, 0xac, 0x10, 0x00, 0x02};
  s.acked_features = (1ull << 32) | (1ull << 5) | 1;
  fill_bytes(s.config, 41);
  s.activated = true;
  return s;
}

inline virtio::console::ConsoleDeviceState sample_console() {
  virtio::console::ConsoleDeviceState s;
  s.acked_features = (1ull << 32) | 1;
  fill_bytes(s.config, 42);
  s.activated = true;
  s.tx_resume_offset = 17;
  return s;
}

inline virtio::rng::RngDeviceState sample_rng() {
  virtio::rng::RngDeviceState s;
  s.acked_features = 1ull << 32;
  s.activated = true;
  return s;
}

inline VirtioSlotState sample_slot(std::uint32_t index, VirtioDeviceState device,
                                   std::size_t queues) {
  VirtioSlotState s;
  s.mmio_base = 0xd0000000 + index * 0x1000u;
  s.mmio_size = 0x1000;
  s.gsi = 5 + index;
  s.transport = sample_transport(device_type(device), queues);
  s.device = std::move(device);
  return s;
}

// `vcpus` vCPUs; with `virtio`, one device of each kind.
inline VmSnapshot sample_snapshot(std::size_t vcpus, bool virtio) {
  VmSnapshot s;
  for (std::size_t i = 0; i < vcpus; ++i) s.vcpus.push_back(sample_vcpu(std::uint8_t(i)));
  s.host = host_compat(s.vcpus.at(0).cpuid, KVM_API_VERSION);
  s.memory = {{.guest_address = 0, .size = 0xc0000000, .file_offset = 0},
              {.guest_address = 0x100000000, .size = 0x40000000, .file_offset = 0xc0000000}};
  s.vm = sample_vm();
  s.pio = {sample_serial(), sample_i8042(), sample_rtc(), sample_acpi_pm()};
  if (virtio) {
    s.virtio.push_back(sample_slot(0, sample_block(), 1));
    s.virtio.push_back(sample_slot(1, sample_net(), 2));
    s.virtio.push_back(sample_slot(2, sample_console(), 2));
    s.virtio.push_back(sample_slot(3, sample_rng(), 1));
  }
  const std::string_view config = R"({"machine-config":{"vcpu_count":2,"mem_size_mib":4096}})";
  s.vm_config.assign(config.begin(), config.end());
  return s;
}

}  // namespace hvz::snapshot::samples
