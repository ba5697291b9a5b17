// The snapshot state file format without KVM: every state round-trips with
// every field set; the whole VmSnapshot round-trips through bytes and
// files; truncations, flipped bits, wrong magic or versions, trailing bytes,
// oversized counts (without allocating for them) and invalid states are
// refused with messages that say where.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <lzma.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "virtio/virtio_device.hpp"
#include "vmm/core/le.hpp"
#include "vmm/snapshot/codec.hpp"
#include "vmm/snapshot/snapshot.hpp"
#include "vmm/snapshot/state_codec.hpp"
#include "vmm/snapshot/tests/sample_states.hpp"

// The largest single allocation made while g_track_allocations is set: the
// decoder must not allocate what a length prefix merely claims.
namespace {
std::size_t g_largest_allocation = 0;
bool g_track_allocations = false;
}  // namespace

// (A replacement operator new may take its memory from malloc; GCC does
// not know that this one is the replacement.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t size) {
  if (g_track_allocations) g_largest_allocation = std::max(g_largest_allocation, size);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace hvz::snapshot {
namespace {

using namespace samples;  // NOLINT(google-build-using-namespace)
using ::testing::HasSubstr;

class AllocationWatch {
 public:
  AllocationWatch() {
    g_largest_allocation = 0;
    g_track_allocations = true;
  }
  ~AllocationWatch() { g_track_allocations = false; }
  std::size_t largest() const { return g_largest_allocation; }
};

std::string message(const Error& e) {
  return e.message();
}

template <typename T>
void expect_round_trip(const T& state) {
  const std::vector<std::byte> bytes = encode_state(state);
  auto back = decode_state<T>(bytes);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_TRUE(*back == state);
  EXPECT_EQ(encode_state(*back), bytes);
}

TEST(SampleStates, SetEveryField) {
  const x86_64::VcpuState vcpu = sample_vcpu(1);
  EXPECT_EQ(differences(vcpu, x86_64::VcpuState{}),
            (std::vector<std::string>{"cpuid", "regs", "sregs", "xsave", "xcrs", "debugregs",
                                      "lapic", "mp_state", "events", "tsc_khz", "msr list"}));
  EXPECT_EQ(differences(sample_vm(), x86_64::VmState{}),
            (std::vector<std::string>{"pic_master", "pic_slave", "ioapic", "pit",
                                      "pit.count_load_time", "clock"}));

  const devices::SerialState serial = sample_serial(), serial0;
  EXPECT_NE(serial.dll, serial0.dll);
  EXPECT_NE(serial.dlm, serial0.dlm);
  EXPECT_NE(serial.ier, serial0.ier);
  EXPECT_NE(serial.lcr, serial0.lcr);
  EXPECT_NE(serial.mcr, serial0.mcr);
  EXPECT_NE(serial.scr, serial0.scr);
  EXPECT_NE(serial.fifo_enabled, serial0.fifo_enabled);
  EXPECT_NE(serial.thre_pending, serial0.thre_pending);
  EXPECT_NE(serial.overrun, serial0.overrun);
  EXPECT_NE(serial.rx_fifo, serial0.rx_fifo);

  const devices::I8042State kbd = sample_i8042(), kbd0;
  EXPECT_NE(kbd.ctr, kbd0.ctr);
  EXPECT_NE(kbd.output_port, kbd0.output_port);
  EXPECT_NE(kbd.pending_command, kbd0.pending_command);
  EXPECT_NE(kbd.last_write_command, kbd0.last_write_command);
  EXPECT_NE(kbd.output_buffer, kbd0.output_buffer);

  const devices::CmosRtcState rtc = sample_rtc(), rtc0;
  EXPECT_NE(rtc.index, rtc0.index);
  EXPECT_NE(rtc.nmi_disabled, rtc0.nmi_disabled);
  EXPECT_TRUE(std::none_of(rtc.ram.begin(), rtc.ram.end(), [](auto b) { return b == 0; }));
  EXPECT_NE(rtc.clock_offset_seconds, rtc0.clock_offset_seconds);

  const devices::AcpiPmState pm = sample_acpi_pm(), pm0;
  EXPECT_NE(pm.s5_sleep_type, pm0.s5_sleep_type);
  EXPECT_NE(pm.reset_value, pm0.reset_value);

  const virtio::QueueState q = sample_queue(1), q0;
  EXPECT_NE(q.max_size, q0.max_size);
  EXPECT_NE(q.size, q0.size);
  EXPECT_NE(q.ready, q0.ready);
  EXPECT_NE(q.desc_table, q0.desc_table);
  EXPECT_NE(q.avail_ring, q0.avail_ring);
  EXPECT_NE(q.used_ring, q0.used_ring);
  EXPECT_NE(q.features, q0.features);
  EXPECT_NE(q.next_avail, q0.next_avail);
  EXPECT_NE(q.next_used, q0.next_used);
  EXPECT_NE(q.signalled_used, q0.signalled_used);
  EXPECT_NE(q.signalled_used_valid, q0.signalled_used_valid);
  EXPECT_NE(q.broken, q0.broken);

  // `version` is the one field that must keep its default: it is kVersion.
  const virtio::MmioTransportState t = sample_transport(virtio::kDeviceTypeNet, 2), t0;
  EXPECT_NE(t.device_type, t0.device_type);
  EXPECT_NE(t.status, t0.status);
  EXPECT_NE(t.device_features_sel, t0.device_features_sel);
  EXPECT_NE(t.driver_features_sel, t0.driver_features_sel);
  EXPECT_NE(t.driver_features, t0.driver_features);
  EXPECT_NE(t.driver_features_beyond_64, t0.driver_features_beyond_64);
  EXPECT_NE(t.queue_sel, t0.queue_sel);
  EXPECT_NE(t.interrupt_status, t0.interrupt_status);
  EXPECT_NE(t.needs_reset, t0.needs_reset);
  EXPECT_NE(t.config_generation, t0.config_generation);
  EXPECT_NE(t.activated, t0.activated);
  EXPECT_NE(t.queues, t0.queues);

  const virtio::block::BlockDeviceState blk = sample_block(), blk0;
  EXPECT_NE(blk.disk_path, blk0.disk_path);
  EXPECT_NE(blk.drive_id, blk0.drive_id);
  EXPECT_NE(blk.read_only, blk0.read_only);
  EXPECT_NE(blk.capacity_sectors, blk0.capacity_sectors);
  EXPECT_NE(blk.acked_features, blk0.acked_features);
  EXPECT_NE(blk.config, blk0.config);
  EXPECT_NE(blk.activated, blk0.activated);

  const virtio::net::NetDeviceState net = sample_net(), net0;
  EXPECT_NE(net.iface_id, net0.iface_id);
  EXPECT_NE(net.mac, net0.mac);
  EXPECT_NE(net.acked_features, net0.acked_features);
  EXPECT_NE(net.config, net0.config);
  EXPECT_NE(net.activated, net0.activated);

  const virtio::console::ConsoleDeviceState con = sample_console(), con0;
  EXPECT_NE(con.acked_features, con0.acked_features);
  EXPECT_NE(con.config, con0.config);
  EXPECT_NE(con.activated, con0.activated);
  EXPECT_NE(con.tx_resume_offset, con0.tx_resume_offset);

  const virtio::rng::RngDeviceState rng = sample_rng(), rng0;
  EXPECT_NE(rng.acked_features, rng0.acked_features);
  EXPECT_NE(rng.activated, rng0.activated);
}

TEST(StateCodec, EveryStateRoundTrips) {
  expect_round_trip(sample_vcpu(3));
  expect_round_trip(sample_vm());
  expect_round_trip(sample_serial());
  expect_round_trip(sample_i8042());
  expect_round_trip(sample_rtc());
  expect_round_trip(sample_acpi_pm());
  expect_round_trip(sample_queue(2));
  expect_round_trip(sample_transport(virtio::kDeviceTypeBlock, 2));
  expect_round_trip(sample_block());
  expect_round_trip(sample_net());
  expect_round_trip(sample_console());
  expect_round_trip(sample_rng());
}

TEST(StateCodec, KernelStructsKeepEveryByte) {
  const x86_64::VcpuState vcpu = sample_vcpu(7);
  auto back = decode_state<x86_64::VcpuState>(encode_state(vcpu));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(std::memcmp(&back->sregs, &vcpu.sregs, sizeof vcpu.sregs), 0);
  EXPECT_EQ(std::memcmp(&back->lapic, &vcpu.lapic, sizeof vcpu.lapic), 0);
  EXPECT_EQ(std::memcmp(&back->events, &vcpu.events, sizeof vcpu.events), 0);
  ASSERT_EQ(back->cpuid.size(), vcpu.cpuid.size());
  EXPECT_EQ(std::memcmp(back->cpuid.data(), vcpu.cpuid.data(),
                        vcpu.cpuid.size() * sizeof(kvm_cpuid_entry2)),
            0);
  EXPECT_EQ(back->xsave, vcpu.xsave);
  EXPECT_EQ(back->msrs, vcpu.msrs);
  const x86_64::VmState vm = sample_vm();
  auto vm_back = decode_state<x86_64::VmState>(encode_state(vm));
  ASSERT_TRUE(vm_back) << vm_back.error().message();
  EXPECT_EQ(std::memcmp(&vm_back->pit, &vm.pit, sizeof vm.pit), 0);
  EXPECT_EQ(std::memcmp(&vm_back->clock, &vm.clock, sizeof vm.clock), 0);
}

TEST(StateCodec, AbsentOptionalsRoundTrip) {
  x86_64::VcpuState vcpu = sample_vcpu(0);
  vcpu.tsc_khz.reset();
  expect_round_trip(vcpu);
  virtio::net::NetDeviceState net = sample_net();
  net.mac.reset();
  expect_round_trip(net);
  expect_round_trip(devices::SerialState{});
}

TEST(StateCodec, QueueEncodingHasItsFixedSize) {
  EXPECT_EQ(encode_state(sample_queue(0)).size(), kEncodedQueueBytes);
}

// Every versioned section starts with its u32 version: another one is
// refused, naming the section.
template <typename T>
void expect_version_refused(const T& state, const char* section) {
  std::vector<std::byte> bytes = encode_state(state);
  bytes[0] = std::byte{T::kVersion + 1};
  auto back = decode_state<T>(bytes);
  ASSERT_FALSE(back) << section;
  EXPECT_EQ(message(back.error()), std::string("snapshot: ") + section +
                                       ": version 2 is not supported (this hvz reads 1)");
}

TEST(StateCodec, OtherVersionsAreRefused) {
  expect_version_refused(sample_vcpu(0), "vCPU state");
  expect_version_refused(sample_vm(), "VM state");
  expect_version_refused(sample_serial(), "serial state");
  expect_version_refused(sample_i8042(), "i8042 state");
  expect_version_refused(sample_rtc(), "RTC state");
  expect_version_refused(sample_acpi_pm(), "ACPI PM state");
  expect_version_refused(sample_transport(2, 1), "virtio-mmio transport state");
  expect_version_refused(sample_block(), "virtio-block state");
  expect_version_refused(sample_net(), "virtio-net state");
  expect_version_refused(sample_console(), "virtio-console state");
  expect_version_refused(sample_rng(), "virtio-rng state");
  // A struct's own version member is what the section says.
  virtio::rng::RngDeviceState rng = sample_rng();
  rng.version = 9;
  auto back = decode_state<virtio::rng::RngDeviceState>(encode_state(rng));
  ASSERT_FALSE(back);
  EXPECT_THAT(message(back.error()), HasSubstr("version 9 is not supported"));
}

TEST(StateCodec, KernelStructOfAnotherSizeIsRefused) {
  std::vector<std::byte> bytes = encode_state(sample_vm());
  // VM state: version (4), then pic_master's size.
  put_le(std::span(reinterpret_cast<std::uint8_t*>(bytes.data()), bytes.size()), 4,
         static_cast<std::uint32_t>(sizeof(kvm_irqchip) - 8));
  auto back = decode_state<x86_64::VmState>(bytes);
  ASSERT_FALSE(back);
  EXPECT_THAT(
      message(back.error()),
      HasSubstr("snapshot: VM state: pic_master: size " + std::to_string(sizeof(kvm_irqchip) - 8) +
                ", this hvz's is " + std::to_string(sizeof(kvm_irqchip))));
}

TEST(StateCodec, BooleansAreZeroOrOne) {
  std::vector<std::byte> bytes = encode_state(sample_rng());
  bytes.back() = std::byte{2};  // activated
  auto back = decode_state<virtio::rng::RngDeviceState>(bytes);
  ASSERT_FALSE(back);
  EXPECT_EQ(message(back.error()),
            "snapshot: virtio-rng state: activated: boolean byte 2 is neither 0 nor 1");
}

TEST(StateCodec, DeviceBuffersAreBoundedByTheDevice) {
  devices::SerialState serial = sample_serial();
  serial.rx_fifo.assign(devices::uart::kFifoSize + 1, 0x41);
  auto s = decode_state<devices::SerialState>(encode_state(serial));
  ASSERT_FALSE(s);
  EXPECT_EQ(message(s.error()), "snapshot: serial state: rx_fifo: count 65 is more than 64");
  devices::I8042State kbd = sample_i8042();
  kbd.output_buffer.assign(devices::i8042::kBufferSize + 1, 0xfa);
  auto k = decode_state<devices::I8042State>(encode_state(kbd));
  ASSERT_FALSE(k);
  EXPECT_THAT(message(k.error()), HasSubstr("output_buffer: count 17 is more than 16"));
  virtio::block::BlockDeviceState blk = sample_block();
  blk.drive_id.assign(limits::kIdLength + 1, 'x');
  auto b = decode_state<virtio::block::BlockDeviceState>(encode_state(blk));
  ASSERT_FALSE(b);
  EXPECT_THAT(message(b.error()), HasSubstr("drive_id: count 65 is more than 64"));
}

// A vCPU state with everything up to the XSAVE area's count, which claims
// `count` 4-byte words, and `tail` bytes after it.
std::vector<std::byte> vcpu_claiming_xsave_words(std::uint32_t count, std::size_t tail) {
  const x86_64::VcpuState vcpu = sample_vcpu(0);
  Writer w;
  w.u32(x86_64::VcpuState::kVersion);
  w.raw_array(vcpu.cpuid);
  w.count(0);  // msrs
  w.raw(vcpu.regs);
  w.raw(vcpu.sregs);
  w.u32(sizeof(std::uint32_t));
  w.u32(count);
  w.bytes(std::vector<std::byte>(tail, std::byte{0x55}));
  return std::move(w).take();
}

TEST(StateCodec, HugeCountsFailBeforeAnyAllocation) {
  const auto over_limit = vcpu_claiming_xsave_words(0xffffffff, 64);  // 2^32 - 1 words
  const auto over_data = vcpu_claiming_xsave_words(limits::kXsaveWords, 64);
  AllocationWatch watch;
  auto a = decode_state<x86_64::VcpuState>(over_limit);
  auto b = decode_state<x86_64::VcpuState>(over_data);
  EXPECT_LT(watch.largest(), 4096u);
  ASSERT_FALSE(a);
  EXPECT_EQ(message(a.error()),
            "snapshot: vCPU state: xsave: count 4294967295 is more than 262144");
  ASSERT_FALSE(b);
  EXPECT_EQ(message(b.error()),
            "snapshot: vCPU state: xsave: truncated: count 262144 needs at least 1048576 "
            "bytes, 64 left");
}

TEST(StateCodec, CountsWithinTheLimitStillMatchTheBytesLeft) {
  // A transport claiming its limit of queues with none encoded.
  Writer w;
  w.u32(virtio::MmioTransportState::kVersion);
  for (int i = 0; i < 4; ++i) w.u32(0);
  w.u64(0);
  w.boolean(false);
  w.u32(0);
  w.u32(0);
  w.boolean(false);
  w.u32(0);
  w.boolean(false);
  w.u32(limits::kQueuesPerDevice);
  AllocationWatch watch;
  auto t = decode_state<virtio::MmioTransportState>(w.buffer());
  EXPECT_LT(watch.largest(), 1024u);
  ASSERT_FALSE(t);
  EXPECT_THAT(message(t.error()), HasSubstr("queues: truncated: count 64 needs at least"));
}

TEST(Snapshot, RoundTripsThroughBytes) {
  const VmSnapshot snapshot = sample_snapshot(2, true);
  const std::vector<std::byte> bytes = encode_snapshot(snapshot);
  auto back = decode_snapshot(bytes);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_TRUE(*back == snapshot);
  EXPECT_EQ(encode_snapshot(*back), bytes);
  ASSERT_EQ(back->virtio.size(), 4u);
  EXPECT_EQ(device_id(back->virtio[0].device), "rootfs");
  EXPECT_EQ(device_id(back->virtio[1].device), "eth0");
  EXPECT_EQ(device_id(back->virtio[2].device), "");
  EXPECT_EQ(device_type(back->virtio[3].device), virtio::kDeviceTypeRng);
}

TEST(Snapshot, ContainerLayout) {
  const std::vector<std::byte> bytes = encode_snapshot(sample_snapshot(1, false));
  ASSERT_GT(bytes.size(), kHeaderSize + kTrailerSize);
  const std::span<const std::uint8_t> u8(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                         bytes.size());
  EXPECT_EQ(std::memcmp(u8.data(), "HVZSNAP\0", 8), 0);
  EXPECT_EQ(get_le(u8, 8, 4), VmSnapshot::kVersion);
  EXPECT_EQ(get_le(u8, 12, 8), bytes.size() - kHeaderSize - kTrailerSize);
  const std::size_t crc_at = bytes.size() - kTrailerSize;
  EXPECT_EQ(get_le(u8, crc_at, 8), lzma_crc64(u8.data(), crc_at, 0));
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "snapshot-test-XXXXXX";
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(Snapshot, RoundTripsThroughFiles) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string path = dir.path() + "/vm.snap";
  const VmSnapshot first = sample_snapshot(2, true);
  ASSERT_TRUE(write_snapshot_file(path, first));
  // Written again: replaced whole, nothing left beside it.
  const VmSnapshot second = sample_snapshot(1, false);
  auto written = write_snapshot_file(path, second);
  ASSERT_TRUE(written) << written.error().message();
  auto entries = std::distance(std::filesystem::directory_iterator(dir.path()),
                               std::filesystem::directory_iterator());
  EXPECT_EQ(entries, 1);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), encode_snapshot(second).size());

  auto back = read_snapshot_file(path, 1u << 20);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_TRUE(*back == second);
}

TEST(Snapshot, ReadRefusesFilesOverTheLimitBeforeReading) {
  TempDir dir;
  const std::string path = dir.path() + "/vm.snap";
  ASSERT_TRUE(write_snapshot_file(path, sample_snapshot(1, false)));
  const auto size = std::filesystem::file_size(path);
  AllocationWatch watch;
  auto back = read_snapshot_file(path, size - 1);
  EXPECT_LT(watch.largest(), 1024u);
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code(), Errc::kOutOfRange);
  EXPECT_EQ(message(back.error()), path + " is " + std::to_string(size) + " bytes, more than the " +
                                       std::to_string(size - 1) +
                                       "-byte limit for a snapshot state file");
  EXPECT_TRUE(read_snapshot_file(path, size));
}

TEST(Snapshot, ReadNamesTheFileInErrors) {
  TempDir dir;
  const std::string missing = dir.path() + "/missing.snap";
  auto m = read_snapshot_file(missing, 1u << 20);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), Errc::kSystem);
  EXPECT_THAT(message(m.error()), HasSubstr(missing));
  const std::string junk = dir.path() + "/junk.snap";
  std::ofstream(junk) << "not a snapshot at all";
  auto j = read_snapshot_file(junk, 1u << 20);
  ASSERT_FALSE(j);
  EXPECT_EQ(message(j.error()), junk + ": not an hvz snapshot");
  auto d = read_snapshot_file(dir.path(), 1u << 20);
  ASSERT_FALSE(d);
  EXPECT_THAT(message(d.error()), HasSubstr("not a regular file"));
}

TEST(Snapshot, WriteFailsCleanlyWhereItCannotWrite) {
  auto w = write_snapshot_file("/nonexistent-dir/vm.snap", sample_snapshot(1, false));
  ASSERT_FALSE(w);
  EXPECT_THAT(message(w.error()), HasSubstr("/nonexistent-dir/vm.snap"));
}

TEST(Snapshot, EveryTruncationIsRefused) {
  const std::vector<std::byte> bytes = encode_snapshot(sample_snapshot(1, true));
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto back = decode_snapshot(std::span(bytes).first(n));
    ASSERT_FALSE(back) << n;
    if (n >= kHeaderSize) {
      ASSERT_THAT(message(back.error()), HasSubstr("snapshot truncated")) << n;
    }
  }
}

TEST(Snapshot, EveryTruncatedPayloadNamesWhatIsMissing) {
  // The same cuts inside a container that is otherwise right (length and
  // checksum match), so the section decoders see them.
  const std::vector<std::byte> full = encode_snapshot(sample_snapshot(1, true));
  const auto payload =
      std::span(full).subspan(kHeaderSize, full.size() - kHeaderSize - kTrailerSize);
  for (std::size_t n = 0; n < payload.size(); ++n) {
    auto back = decode_snapshot(encode_container(payload.first(n)));
    ASSERT_FALSE(back) << n;
    ASSERT_THAT(message(back.error()), HasSubstr("truncated")) << n;
  }
  auto xsave_cut = decode_snapshot(encode_container(payload.first(3000)));
  ASSERT_FALSE(xsave_cut);
  EXPECT_THAT(message(xsave_cut.error()), HasSubstr("snapshot: vCPU 0: vCPU state: xsave:"));
}

TEST(Snapshot, EveryFlippedBitIsRefused) {
  const std::vector<std::byte> bytes = encode_snapshot(sample_snapshot(1, false));
  std::vector<std::byte> copy = bytes;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      copy[i] = bytes[i] ^ std::byte{static_cast<std::uint8_t>(1u << bit)};
      auto back = decode_snapshot(copy);
      ASSERT_FALSE(back) << i << ":" << bit;
      if (i >= kHeaderSize) {
        ASSERT_EQ(message(back.error()), "snapshot checksum mismatch (corrupt or truncated)");
      }
    }
    copy[i] = bytes[i];
  }
}

TEST(Snapshot, WrongMagicIsNotASnapshot) {
  std::vector<std::byte> bytes = encode_snapshot(sample_snapshot(1, false));
  bytes[6] = std::byte{'Q'};
  auto back = decode_snapshot(bytes);
  ASSERT_FALSE(back);
  EXPECT_EQ(message(back.error()), "not an hvz snapshot");
  const char elf[] =
      "\x7f"
      "ELF\x02\x01\x01";
  auto e = decode_snapshot(std::as_bytes(std::span(elf)));
  ASSERT_FALSE(e);
  EXPECT_EQ(message(e.error()), "not an hvz snapshot");
}

TEST(Snapshot, OtherFormatVersionsAreRefused) {
  std::vector<std::byte> bytes = encode_snapshot(sample_snapshot(1, false));
  bytes[8] = std::byte{2};
  auto back = decode_snapshot(bytes);
  ASSERT_FALSE(back);
  EXPECT_EQ(message(back.error()), "snapshot format version 2 is not supported (this hvz reads 1)");
}

TEST(Snapshot, TrailingBytesAreRefused) {
  std::vector<std::byte> bytes = encode_snapshot(sample_snapshot(1, false));
  bytes.push_back(std::byte{0});
  auto back = decode_snapshot(bytes);
  ASSERT_FALSE(back);
  EXPECT_EQ(message(back.error()), "1 unexpected bytes after the snapshot's checksum");

  // Bytes after the payload's last field, inside a valid container.
  const std::vector<std::byte> full = encode_snapshot(sample_snapshot(1, false));
  std::vector<std::byte> payload(full.begin() + kHeaderSize, full.end() - kTrailerSize);
  payload.push_back(std::byte{0x42});
  auto inner = decode_snapshot(encode_container(payload));
  ASSERT_FALSE(inner);
  EXPECT_EQ(message(inner.error()), "snapshot: 1 unexpected bytes after the last field");
}

TEST(Snapshot, HugePayloadLengthFailsWithoutAllocating) {
  for (std::uint64_t length : {std::uint64_t{1} << 32, std::uint64_t{1} << 63,
                               std::numeric_limits<std::uint64_t>::max()}) {
    std::vector<std::byte> bytes = encode_snapshot(sample_snapshot(1, false));
    put_le(std::span(reinterpret_cast<std::uint8_t*>(bytes.data()), bytes.size()), 12, length);
    AllocationWatch watch;
    auto back = decode_snapshot(bytes);
    EXPECT_LT(watch.largest(), 1024u);
    ASSERT_FALSE(back);
    EXPECT_THAT(message(back.error()), HasSubstr("snapshot truncated: the header promises a " +
                                                 std::to_string(length) + "-byte payload"));
  }
}

// A snapshot payload whose VM config blob claims `length` bytes with only
// a few following.
TEST(Snapshot, HugeBlobLengthFailsWithoutAllocating) {
  const std::vector<std::byte> full = encode_snapshot(sample_snapshot(1, false));
  std::vector<std::byte> payload(full.begin() + kHeaderSize, full.end() - kTrailerSize);
  const std::size_t config_size = sample_snapshot(1, false).vm_config.size();
  payload.resize(payload.size() - config_size - 4);
  Writer w;
  w.bytes(payload);
  w.u32(0xffffffff);
  w.u32(0);
  const std::vector<std::byte> bytes = encode_container(w.buffer());
  AllocationWatch watch;
  auto back = decode_snapshot(bytes);
  EXPECT_LT(watch.largest(), 64u * 1024);  // the vCPU's own 4 KiB XSAVE area, not 4 GiB
  ASSERT_FALSE(back);
  EXPECT_EQ(message(back.error()), "snapshot: vm_config: count 4294967295 is more than 1048576");
}

TEST(Snapshot, AVcpuStateValidateRefusesIsRefused) {
  VmSnapshot snapshot = sample_snapshot(2, false);
  snapshot.vcpus[1].xsave.resize(100);
  auto back = decode_snapshot(encode_snapshot(snapshot));
  ASSERT_FALSE(back);
  EXPECT_EQ(message(back.error()),
            "snapshot: vCPU 1: vCPU state: XSAVE area of 400 bytes, shorter than 4096");

  snapshot = sample_snapshot(1, false);
  snapshot.vcpus[0].cpuid.resize(257);
  back = decode_snapshot(encode_snapshot(snapshot));
  ASSERT_FALSE(back);
  EXPECT_EQ(message(back.error()),
            "snapshot: vCPU 0: vCPU state: cpuid: count 257 is more than 256");
}

TEST(Snapshot, AVmStateValidateRefusesIsRefused) {
  VmSnapshot snapshot = sample_snapshot(1, false);
  snapshot.vm.ioapic.chip_id = KVM_IRQCHIP_PIC_MASTER;
  auto back = decode_snapshot(encode_snapshot(snapshot));
  ASSERT_FALSE(back);
  EXPECT_EQ(message(back.error()), "snapshot: VM state: IOAPIC has chip id 0");
}

TEST(Snapshot, VcpuCountIsBounded) {
  VmSnapshot snapshot = sample_snapshot(1, false);
  snapshot.vcpus.clear();
  auto none = decode_snapshot(encode_snapshot(snapshot));
  ASSERT_FALSE(none);
  EXPECT_EQ(message(none.error()), "snapshot: no vCPU");
  snapshot.vcpus.assign(33, sample_vcpu(0));
  auto many = decode_snapshot(encode_snapshot(snapshot));
  ASSERT_FALSE(many);
  EXPECT_EQ(message(many.error()), "snapshot: vCPUs: count 33 is more than 32");
}

TEST(Snapshot, TransportAndDeviceMustAgree) {
  VmSnapshot snapshot = sample_snapshot(1, true);
  snapshot.virtio[1].transport.device_type = virtio::kDeviceTypeBlock;  // a net device
  auto back = decode_snapshot(encode_snapshot(snapshot));
  ASSERT_FALSE(back);
  EXPECT_EQ(message(back.error()),
            "snapshot: virtio slot 1: the transport's device type 2 is not the device's (1)");
}

TEST(Snapshot, MemoryLayoutIsChecked) {
  auto refused = [](std::vector<MemoryRegion> memory) {
    VmSnapshot snapshot = sample_snapshot(1, false);
    snapshot.memory = std::move(memory);
    auto back = decode_snapshot(encode_snapshot(snapshot));
    return back ? std::string("accepted") : message(back.error());
  };
  EXPECT_EQ(refused({}), "accepted");
  EXPECT_EQ(refused({{0, 0, 0}}), "snapshot: memory region 0: empty or wrapping around");
  EXPECT_EQ(refused({{~0ull - 10, 0x1000, 0}}),
            "snapshot: memory region 0: empty or wrapping around");
  EXPECT_EQ(refused({{0x1000, 0x1000, 0}, {0x1800, 0x1000, 0x1000}}),
            "snapshot: memory region 1: below or overlapping the region before it");
  EXPECT_EQ(refused({{0x1000, 0x1000, 0}, {0x4000, 0x1000, 0x800}}),
            "snapshot: memory region 1: its file range overlaps region 0's");
}

TEST(Snapshot, OtherArchitecturesAreRefused) {
  VmSnapshot snapshot = sample_snapshot(1, false);
  snapshot.host.arch = 183;  // EM_AARCH64
  auto back = decode_snapshot(encode_snapshot(snapshot));
  ASSERT_FALSE(back);
  EXPECT_EQ(message(back.error()),
            "snapshot: host: architecture 183 is not this hvz's (62, x86_64)");
}

TEST(HostCompat, ComesFromTheVcpusCpuid) {
  const HostCompat h = host_compat(sample_vcpu(0).cpuid, 12);
  EXPECT_EQ(h.arch, kArchX86_64);
  EXPECT_EQ(h.kvm_api_version, 12u);
  EXPECT_EQ(std::string(h.cpu_vendor.data(), h.cpu_vendor.size()), "GenuineIntel");
  EXPECT_EQ(h.cpu_signature, 0x000806ecu);
  const HostCompat none = host_compat({}, 12);
  EXPECT_EQ(none.cpu_signature, 0u);
  EXPECT_EQ(none.cpu_vendor, (std::array<char, 12>{}));
}

TEST(HostCompat, RestoreChecksArchitectureKvmVendorFamilyAndModel) {
  const HostCompat saved = host_compat(sample_vcpu(0).cpuid, 12);
  EXPECT_TRUE(check_host_compat(saved, saved));
  HostCompat other = saved;
  other.cpu_signature = 0x000806ea;  // another stepping
  EXPECT_TRUE(check_host_compat(saved, other));

  other = saved;
  other.cpu_signature = 0x000906ec;  // model 0x9e
  auto model = check_host_compat(saved, other);
  ASSERT_FALSE(model);
  EXPECT_EQ(model.error().code(), Errc::kUnsupported);
  EXPECT_EQ(message(model.error()),
            "snapshot: taken on a GenuineIntel family 6 model 142 CPU, this host has a "
            "GenuineIntel family 6 model 158");

  other = saved;
  const char amd[] = "AuthenticAMD";
  std::copy(amd, amd + 12, other.cpu_vendor.begin());
  other.cpu_signature = 0x00a00f11;  // family 0x19 model 1
  auto vendor = check_host_compat(saved, other);
  ASSERT_FALSE(vendor);
  EXPECT_THAT(message(vendor.error()), HasSubstr("this host has a AuthenticAMD family 25 model 1"));

  other = saved;
  other.kvm_api_version = 13;
  auto kvm = check_host_compat(saved, other);
  ASSERT_FALSE(kvm);
  EXPECT_EQ(message(kvm.error()), "snapshot: taken with KVM API version 12, this host has 13");

  other = saved;
  other.arch = 183;
  EXPECT_FALSE(check_host_compat(saved, other));
}

}  // namespace
}  // namespace hvz::snapshot
