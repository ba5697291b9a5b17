// The encoding of each part's saved state (vCPU, VM, PIO devices, virtio
// queues, transports and devices) inside a snapshot. Every section starts
// with the u32 version of its struct (kVersion; the struct's own `version`
// member where it has one) and decoding refuses any other. Kernel structs
// are their raw bytes behind their size; vectors carry a count bounded by
// the limits below, which are also what restore accepts.
//
// Each struct's layout is one fields() function, walked by the Encoder and
// the Decoder alike (codec.hpp); encode() and decode() below take any
// struct that has one. decode() also refuses what the struct's own
// validation refuses when that check is a free function (validate() for
// vCPU and VM state); the device restore functions check the rest of
// their state themselves.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "devices/acpi_pm.hpp"
#include "devices/cmos_rtc.hpp"
#include "devices/i8042.hpp"
#include "devices/serial.hpp"
#include "virtio/block/block_device.hpp"
#include "virtio/console/console_device.hpp"
#include "virtio/mmio_transport.hpp"
#include "virtio/net/net_device.hpp"
#include "virtio/queue.hpp"
#include "virtio/rng/rng_device.hpp"
#include "vmm/core/error.hpp"
#include "vmm/snapshot/codec.hpp"
#include "vmm/x86_64/vcpu_state.hpp"
#include "vmm/x86_64/vm_state.hpp"

namespace hvz::snapshot {

namespace limits {
inline constexpr std::size_t kCpuidLeaves = 256;  // as validate(VcpuState)
inline constexpr std::size_t kMsrs = 4096;        // KVM's index list is a few hundred
// KVM_GET_XSAVE2's area is 4 KiB plus the enabled extended features (AMX
// tiles make it ~11 KiB); 1 MiB leaves room for any future feature.
inline constexpr std::size_t kXsaveWords = (1u << 20) / sizeof(std::uint32_t);
inline constexpr std::size_t kQueuesPerDevice = 64;
inline constexpr std::size_t kIdLength = 64;      // drive_id / iface_id, as the config allows
inline constexpr std::size_t kPathLength = 4096;  // PATH_MAX
}  // namespace limits

// QueueState has no version of its own: it is part of the transport's.
// Its encoding has a fixed size.
inline constexpr std::size_t kEncodedQueueBytes = 45;

// S is T, or const T when encoding.
template <typename S, typename T>
concept StateOf = std::same_as<std::remove_const_t<S>, T>;

template <typename Io, StateOf<x86_64::VcpuState> S>
void fields(Io& io, S& s) {
  {
    auto section = io.section("vCPU state");
    io.version(x86_64::VcpuState::kVersion);
    io.raw_array("cpuid", s.cpuid, limits::kCpuidLeaves);
    io.elements("msrs", s.msrs, limits::kMsrs, 12, "msr", [](auto& e, auto& m) {
      e.field("index", m.index);
      e.field("value", m.value);
    });
    io.raw("regs", s.regs);
    io.raw("sregs", s.sregs);
    io.raw_array("xsave", s.xsave, limits::kXsaveWords);
    io.raw("xcrs", s.xcrs);
    io.raw("debugregs", s.debugregs);
    io.raw("lapic", s.lapic);
    io.raw("mp_state", s.mp_state);
    io.raw("events", s.events);
    io.field("tsc_khz", s.tsc_khz);
  }
  if constexpr (Io::kDecoding) io.check(x86_64::validate(s));
}

template <typename Io, StateOf<x86_64::VmState> S>
void fields(Io& io, S& s) {
  {
    auto section = io.section("VM state");
    io.version(x86_64::VmState::kVersion);
    io.raw("pic_master", s.pic_master);
    io.raw("pic_slave", s.pic_slave);
    io.raw("ioapic", s.ioapic);
    io.raw("pit", s.pit);
    io.raw("clock", s.clock);
  }
  if constexpr (Io::kDecoding) io.check(x86_64::validate(s));
}

template <typename Io, StateOf<devices::SerialState> S>
void fields(Io& io, S& s) {
  auto section = io.section("serial state");
  io.version(devices::SerialState::kVersion);
  io.field("dll", s.dll);
  io.field("dlm", s.dlm);
  io.field("ier", s.ier);
  io.field("lcr", s.lcr);
  io.field("mcr", s.mcr);
  io.field("scr", s.scr);
  io.field("fifo_enabled", s.fifo_enabled);
  io.field("thre_pending", s.thre_pending);
  io.field("overrun", s.overrun);
  io.blob("rx_fifo", s.rx_fifo, devices::uart::kFifoSize);
}

template <typename Io, StateOf<devices::I8042State> S>
void fields(Io& io, S& s) {
  auto section = io.section("i8042 state");
  io.version(devices::I8042State::kVersion);
  io.field("ctr", s.ctr);
  io.field("output_port", s.output_port);
  io.field("pending_command", s.pending_command);
  io.field("last_write_command", s.last_write_command);
  io.blob("output_buffer", s.output_buffer, devices::i8042::kBufferSize);
}

template <typename Io, StateOf<devices::CmosRtcState> S>
void fields(Io& io, S& s) {
  auto section = io.section("RTC state");
  io.version(devices::CmosRtcState::kVersion);
  io.field("index", s.index);
  io.field("nmi_disabled", s.nmi_disabled);
  io.field("ram", s.ram);
  io.field("clock_offset_seconds", s.clock_offset_seconds);
}

template <typename Io, StateOf<devices::AcpiPmState> S>
void fields(Io& io, S& s) {
  auto section = io.section("ACPI PM state");
  io.version(devices::AcpiPmState::kVersion);
  io.field("s5_sleep_type", s.s5_sleep_type);
  io.field("reset_value", s.reset_value);
}

template <typename Io, StateOf<virtio::QueueState> S>
void fields(Io& io, S& s) {
  io.field("max_size", s.max_size);
  io.field("size", s.size);
  io.field("ready", s.ready);
  io.field("desc_table", s.desc_table);
  io.field("avail_ring", s.avail_ring);
  io.field("used_ring", s.used_ring);
  io.field("features", s.features);
  io.field("next_avail", s.next_avail);
  io.field("next_used", s.next_used);
  io.field("signalled_used", s.signalled_used);
  io.field("signalled_used_valid", s.signalled_used_valid);
  io.field("broken", s.broken);
}

template <typename Io, StateOf<virtio::MmioTransportState> S>
void fields(Io& io, S& s) {
  auto section = io.section("virtio-mmio transport state");
  io.version(s.version, virtio::MmioTransportState::kVersion);
  io.field("device_type", s.device_type);
  io.field("status", s.status);
  io.field("device_features_sel", s.device_features_sel);
  io.field("driver_features_sel", s.driver_features_sel);
  io.field("driver_features", s.driver_features);
  io.field("driver_features_beyond_64", s.driver_features_beyond_64);
  io.field("queue_sel", s.queue_sel);
  io.field("interrupt_status", s.interrupt_status);
  io.field("needs_reset", s.needs_reset);
  io.field("config_generation", s.config_generation);
  io.field("activated", s.activated);
  io.elements("queues", s.queues, limits::kQueuesPerDevice, kEncodedQueueBytes, "queue",
              [](auto& e, auto& q) { fields(e, q); });
}

template <typename Io, StateOf<virtio::block::BlockDeviceState> S>
void fields(Io& io, S& s) {
  auto section = io.section("virtio-block state");
  io.version(s.version, virtio::block::BlockDeviceState::kVersion);
  io.text("disk_path", s.disk_path, limits::kPathLength);
  io.text("drive_id", s.drive_id, limits::kIdLength);
  io.field("read_only", s.read_only);
  io.field("capacity_sectors", s.capacity_sectors);
  io.field("acked_features", s.acked_features);
  io.field("config", s.config);
  io.field("activated", s.activated);
}

template <typename Io, StateOf<virtio::net::NetDeviceState> S>
void fields(Io& io, S& s) {
  auto section = io.section("virtio-net state");
  io.version(s.version, virtio::net::NetDeviceState::kVersion);
  io.text("iface_id", s.iface_id, limits::kIdLength);
  io.field("mac", s.mac);
  io.field("acked_features", s.acked_features);
  io.field("config", s.config);
  io.field("activated", s.activated);
}

template <typename Io, StateOf<virtio::console::ConsoleDeviceState> S>
void fields(Io& io, S& s) {
  auto section = io.section("virtio-console state");
  io.version(s.version, virtio::console::ConsoleDeviceState::kVersion);
  io.field("acked_features", s.acked_features);
  io.field("config", s.config);
  io.field("activated", s.activated);
  io.field("tx_resume_offset", s.tx_resume_offset);
}

template <typename Io, StateOf<virtio::rng::RngDeviceState> S>
void fields(Io& io, S& s) {
  auto section = io.section("virtio-rng state");
  io.version(s.version, virtio::rng::RngDeviceState::kVersion);
  io.field("acked_features", s.acked_features);
  io.field("activated", s.activated);
}

// Any struct with a fields() walker, into `w` / out of `r`.
template <typename T>
void encode(Writer& w, const T& state) {
  Encoder io(w);
  fields(io, state);
}

template <typename T>
void decode(Reader& r, T& state) {
  Decoder io(r);
  fields(io, state);
}

// One state on its own, for tests and tools: its section bytes, and back
// (the whole span must be that one section).
template <typename T>
std::vector<std::byte> encode_state(const T& state) {
  Writer w;
  encode(w, state);
  return std::move(w).take();
}

template <typename T>
Expected<T> decode_state(std::span<const std::byte> in) {
  Reader r(in, "snapshot");
  T state{};
  decode(r, state);
  r.finish();
  if (!r.ok()) return tl::unexpected(*r.error());
  return state;
}

}  // namespace hvz::snapshot
