// The snapshot state file: VmSnapshot's encoding, the container around it
// and the file helpers (see snapshot.hpp).
#include "vmm/snapshot/snapshot.hpp"

#include <fcntl.h>
#include <lzma.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "virtio/virtio_device.hpp"
#include "vmm/config/vm_config.hpp"
#include "vmm/core/le.hpp"
#include "vmm/core/unique_fd.hpp"
#include "vmm/snapshot/codec.hpp"
#include "vmm/snapshot/state_codec.hpp"

namespace hvz::snapshot {
namespace {

constexpr std::size_t kVersionOffset = 8;
constexpr std::size_t kLengthOffset = 12;

std::uint64_t crc64(std::span<const std::byte> bytes) {
  return lzma_crc64(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), 0);
}

std::span<const std::uint8_t> as_u8(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()};
}

tl::unexpected<Error> invalid(std::string what) {
  return make_error(Errc::kInvalidArgument, std::move(what));
}

struct CpuModel {
  std::uint32_t family;
  std::uint32_t model;
};

// Family and model as Intel and AMD define them from CPUID.1:EAX.
CpuModel cpu_model(std::uint32_t signature) {
  std::uint32_t family = (signature >> 8) & 0xf;
  std::uint32_t model = (signature >> 4) & 0xf;
  if (family == 0xf) family += (signature >> 20) & 0xff;
  if (family == 0x6 || family >= 0xf) model |= ((signature >> 16) & 0xf) << 4;
  return {family, model};
}

std::string describe_cpu(const HostCompat& h) {
  const CpuModel m = cpu_model(h.cpu_signature);
  return std::string(h.cpu_vendor.data(), h.cpu_vendor.size()) + " family " +
         std::to_string(m.family) + " model " + std::to_string(m.model);
}

// The top level's walkers, as state_codec.hpp's (S is T or const T).

template <typename Io, StateOf<HostCompat> S>
void fields(Io& io, S& s) {
  auto section = io.section("host");
  io.field("architecture", s.arch);
  if constexpr (Io::kDecoding) {
    if (s.arch != kArchX86_64) {
      io.fail("architecture " + std::to_string(s.arch) + " is not this hvz's (" +
              std::to_string(kArchX86_64) + ", x86_64)");
    }
  }
  io.field("kvm_api_version", s.kvm_api_version);
  io.raw("cpu_vendor", s.cpu_vendor);
  io.field("cpu_signature", s.cpu_signature);
}

template <typename Io, StateOf<MemoryRegion> S>
void fields(Io& io, S& s) {
  io.field("guest_address", s.guest_address);
  io.field("size", s.size);
  io.field("file_offset", s.file_offset);
}

// What VmSnapshot::memory promises.
void check_memory(Decoder& io, const std::vector<MemoryRegion>& memory) {
  for (std::size_t i = 0; i < memory.size(); ++i) {
    auto section = io.section("memory region " + std::to_string(i));
    const MemoryRegion& m = memory[i];
    if (m.size == 0 || m.guest_address + m.size < m.guest_address ||
        m.file_offset + m.size < m.file_offset) {
      return io.fail("empty or wrapping around");
    }
    if (i > 0 && m.guest_address < memory[i - 1].guest_address + memory[i - 1].size) {
      return io.fail("below or overlapping the region before it");
    }
    for (std::size_t j = 0; j < i; ++j) {
      const MemoryRegion& o = memory[j];
      if (m.file_offset < o.file_offset + o.size && o.file_offset < m.file_offset + m.size) {
        return io.fail("its file range overlaps region " + std::to_string(j) + "'s");
      }
    }
  }
}

template <typename Io, StateOf<PioDeviceStates> S>
void fields(Io& io, S& s) {
  fields(io, s.serial);
  fields(io, s.i8042);
  fields(io, s.rtc);
  fields(io, s.acpi_pm);
}

// The device state of virtio device type `type` into `device`.
void decode_device(Decoder& io, std::uint32_t type, VirtioDeviceState& device) {
  switch (type) {
    case virtio::kDeviceTypeBlock:
      return fields(io, device.emplace<virtio::block::BlockDeviceState>());
    case virtio::kDeviceTypeNet:
      return fields(io, device.emplace<virtio::net::NetDeviceState>());
    case virtio::kDeviceTypeConsole:
      return fields(io, device.emplace<virtio::console::ConsoleDeviceState>());
    case virtio::kDeviceTypeRng:
      return fields(io, device.emplace<virtio::rng::RngDeviceState>());
    default:
      return io.fail("device type " + std::to_string(type) + " is not one hvz has");
  }
}

template <typename Io, StateOf<VirtioSlotState> S>
void fields(Io& io, S& s) {
  io.field("mmio_base", s.mmio_base);
  io.field("mmio_size", s.mmio_size);
  io.field("gsi", s.gsi);
  fields(io, s.transport);
  std::uint32_t type = device_type(s.device);
  io.field("device type", type);
  if constexpr (Io::kDecoding) {
    if (!io.ok()) return;
    decode_device(io, type, s.device);
    if (io.ok() && s.transport.device_type != type) {
      io.fail("the transport's device type " + std::to_string(s.transport.device_type) +
              " is not the device's (" + std::to_string(type) + ")");
    }
  } else {
    std::visit([&io](const auto& device) { fields(io, device); }, s.device);
  }
}

// Each vCPU state takes far more than 64 bytes (its XSAVE area alone is
// 4 KiB), each slot more than 32: the counts are checked against that.
constexpr std::size_t kMinVcpuBytes = 64;
constexpr std::size_t kMinSlotBytes = 32;

template <typename Io, StateOf<VmSnapshot> S>
void fields(Io& io, S& s) {
  auto each = [](auto& e, auto& element) { fields(e, element); };
  fields(io, s.host);
  io.elements("memory regions", s.memory, limits::kMemoryRegions, 24, "memory region", each);
  if constexpr (Io::kDecoding) {
    if (io.ok()) check_memory(io, s.memory);
  }
  fields(io, s.vm);
  io.elements("vCPUs", s.vcpus, config::kMaxVcpus, kMinVcpuBytes, "vCPU", each);
  if constexpr (Io::kDecoding) {
    if (io.ok() && s.vcpus.empty()) io.fail("no vCPU");
  }
  fields(io, s.pio);
  io.elements("virtio slots", s.virtio, limits::kVirtioSlots, kMinSlotBytes, "virtio slot", each);
  io.blob("vm_config", s.vm_config, limits::kVmConfigBytes);
}

}  // namespace

HostCompat host_compat(std::span<const kvm_cpuid_entry2> cpuid, std::uint32_t kvm_api_version) {
  HostCompat h;
  h.kvm_api_version = kvm_api_version;
  for (const kvm_cpuid_entry2& e : cpuid) {
    if (e.function == 0 && e.index == 0) {
      for (std::size_t i = 0; i < 4; ++i) {
        h.cpu_vendor[i] = static_cast<char>(e.ebx >> (8 * i));
        h.cpu_vendor[4 + i] = static_cast<char>(e.edx >> (8 * i));
        h.cpu_vendor[8 + i] = static_cast<char>(e.ecx >> (8 * i));
      }
    } else if (e.function == 1 && e.index == 0) {
      h.cpu_signature = e.eax;
    }
  }
  return h;
}

Expected<void> check_host_compat(const HostCompat& saved, const HostCompat& host) {
  auto unsupported = [](const std::string& what) {
    return make_error(Errc::kUnsupported, "snapshot: " + what);
  };
  if (saved.arch != host.arch) {
    return unsupported("taken on architecture " + std::to_string(saved.arch) + ", this host is " +
                       std::to_string(host.arch));
  }
  if (saved.kvm_api_version != host.kvm_api_version) {
    return unsupported("taken with KVM API version " + std::to_string(saved.kvm_api_version) +
                       ", this host has " + std::to_string(host.kvm_api_version));
  }
  const CpuModel a = cpu_model(saved.cpu_signature);
  const CpuModel b = cpu_model(host.cpu_signature);
  if (saved.cpu_vendor != host.cpu_vendor || a.family != b.family || a.model != b.model) {
    return unsupported("taken on a " + describe_cpu(saved) + " CPU, this host has a " +
                       describe_cpu(host));
  }
  return {};
}

std::uint32_t device_type(const VirtioDeviceState& device) {
  static constexpr std::uint32_t kTypes[] = {virtio::kDeviceTypeBlock, virtio::kDeviceTypeNet,
                                             virtio::kDeviceTypeConsole, virtio::kDeviceTypeRng};
  static_assert(std::size(kTypes) == std::variant_size_v<VirtioDeviceState>);
  return kTypes[device.index()];
}

std::string_view device_id(const VirtioDeviceState& device) {
  if (auto* block = std::get_if<virtio::block::BlockDeviceState>(&device)) return block->drive_id;
  if (auto* net = std::get_if<virtio::net::NetDeviceState>(&device)) return net->iface_id;
  return {};
}

std::vector<std::byte> encode_container(std::span<const std::byte> payload) {
  Writer w;
  w.bytes(kMagic);
  w.u32(VmSnapshot::kVersion);
  w.u64(payload.size());
  w.bytes(payload);
  w.u64(crc64(w.buffer()));
  return std::move(w).take();
}

std::vector<std::byte> encode_snapshot(const VmSnapshot& snapshot) {
  Writer w;
  Encoder io(w);
  fields(io, snapshot);
  return encode_container(w.buffer());
}

Expected<VmSnapshot> decode_snapshot(std::span<const std::byte> file) {
  const std::size_t magic_bytes = std::min(file.size(), kMagic.size());
  if (!std::equal(file.begin(), file.begin() + magic_bytes, kMagic.begin())) {
    return invalid("not an hvz snapshot");
  }
  if (file.size() < kHeaderSize) {
    return invalid("snapshot truncated in its header: " + std::to_string(file.size()) +
                   " bytes, the magic, version and length take " + std::to_string(kHeaderSize));
  }
  const auto bytes = as_u8(file);
  const auto version = static_cast<std::uint32_t>(get_le(bytes, kVersionOffset, 4));
  if (version != VmSnapshot::kVersion) {
    return invalid("snapshot format version " + std::to_string(version) +
                   " is not supported (this hvz reads " + std::to_string(VmSnapshot::kVersion) +
                   ")");
  }
  const std::uint64_t length = get_le(bytes, kLengthOffset, 8);
  const std::size_t after_header = file.size() - kHeaderSize;
  if (after_header < kTrailerSize || length > after_header - kTrailerSize) {
    return invalid("snapshot truncated: the header promises a " + std::to_string(length) +
                   "-byte payload and an 8-byte checksum, " + std::to_string(after_header) +
                   " bytes follow");
  }
  if (length < after_header - kTrailerSize) {
    return invalid(std::to_string(after_header - kTrailerSize - length) +
                   " unexpected bytes after the snapshot's checksum");
  }
  const std::size_t checked = kHeaderSize + length;
  if (crc64(file.first(checked)) != get_le(bytes, checked, 8)) {
    return invalid("snapshot checksum mismatch (corrupt or truncated)");
  }
  Reader r(file.subspan(kHeaderSize, length), "snapshot");
  Decoder io(r);
  VmSnapshot snapshot;
  fields(io, snapshot);
  r.finish();
  if (!r.ok()) return tl::unexpected(*r.error());
  return snapshot;
}

Expected<void> write_snapshot_file(const std::string& path, const VmSnapshot& snapshot) {
  const std::vector<std::byte> bytes = encode_snapshot(snapshot);
  std::string tmp = path + ".tmp-XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) return sys_error("cannot create a temporary file beside " + path);
  auto fail = [&tmp](const std::string& what) {
    const int saved = errno;
    ::unlink(tmp.c_str());
    return make_error(Errc::kSystem, what, saved);
  };
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write " + tmp);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail("cannot fsync " + tmp);
  if (::close(fd.release()) != 0) return fail("cannot close " + tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot rename " + tmp + " to " + path);
  // The rename is durable once the directory is.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return sys_error("cannot open " + dir);
  if (::fsync(dir_fd.get()) != 0) return sys_error("cannot fsync " + dir);
  return {};
}

Expected<VmSnapshot> read_snapshot_file(const std::string& path, std::uint64_t max_size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("cannot open " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_error("cannot stat " + path);
  if (!S_ISREG(st.st_mode)) {
    return make_error(Errc::kInvalidArgument, path + " is not a regular file");
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_size) {
    return make_error(Errc::kOutOfRange, path + " is " + std::to_string(size) +
                                             " bytes, more than the " + std::to_string(max_size) +
                                             "-byte limit for a snapshot state file");
  }
  // One byte more than the size, to see a file that grew meanwhile.
  std::vector<std::byte> bytes(static_cast<std::size_t>(size) + 1);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("cannot read " + path);
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  if (done != size) {
    return make_error(Errc::kInvalidArgument, path + " changed size while being read");
  }
  bytes.resize(done);
  auto snapshot = decode_snapshot(bytes);
  if (!snapshot) {
    return make_error(snapshot.error().code(), path + ": " + snapshot.error().operation());
  }
  return snapshot;
}

}  // namespace hvz::snapshot
