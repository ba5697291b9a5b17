// The VM's configuration as plain structs: one model for the command line,
// the config file and (later) the API. JSON mapping lives in api/; checks
// that need no I/O live in validate().
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/core/error.hpp"

namespace hvz::config {

inline constexpr const char* kDefaultBootArgs = "console=ttyS0 reboot=k panic=1 pci=off";
inline constexpr std::uint32_t kMaxVcpus = 32;
inline constexpr std::uint32_t kMinMemoryMib = 16;
inline constexpr std::uint32_t kMaxMemoryMib = 1u << 20;  // 1 TiB

struct BootSource {
  std::string kernel_image_path;
  std::optional<std::string> initrd_path;
  std::optional<std::string> boot_args;  // unset: kDefaultBootArgs
};

enum class HugePages { kNone, k2M };

struct MachineConfig {
  // Also name each virtio-mmio device on the kernel command line
  // (virtio_mmio.device=4K@0xADDR:GSI), for kernels built with
  // CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES; hvz's own extension, off by default
  // because the DSDT already describes them.
  bool virtio_mmio_cmdline = false;
  std::uint32_t vcpu_count = 1;
  std::uint32_t mem_size_mib = 128;
  bool smt = false;
  HugePages huge_pages = HugePages::kNone;
};

// A virtio-blk drive (Firecracker's "drives" entry).
struct Drive {
  std::string drive_id;
  std::string path_on_host;
  bool is_root_device = false;
  bool is_read_only = false;
  std::optional<std::string> partuuid;  // root=PARTUUID=... instead of /dev/vda
};

inline constexpr std::size_t kMaxDrives = 16;

// A virtio-net interface backed by a TAP device opened by name
// (Firecracker's "network-interfaces" entry).
struct NetworkInterface {
  std::string iface_id;
  std::string host_dev_name;
  std::optional<std::array<std::uint8_t, 6>> guest_mac;
};

// hvz's own "console" section: a virtio-console port (hvc0) beside the
// serial console. kStdio: stdout/stdin (the serial console then gets no
// input); kFile: output appended to `path`, no input; kSocket: hvz
// connects to the Unix socket at `path` for both directions.
struct Console {
  enum class Mode { kStdio, kFile, kSocket };
  Mode mode = Mode::kStdio;
  std::string path;
};

// "aa:bb:cc:dd:ee:ff" -> bytes; nullopt when malformed.
std::optional<std::array<std::uint8_t, 6>> parse_mac(const std::string& text);
std::string format_mac(const std::array<std::uint8_t, 6>& mac);

struct VmConfig {
  std::optional<BootSource> boot_source;
  MachineConfig machine_config;
  std::vector<Drive> drives;
  std::vector<NetworkInterface> network_interfaces;
  std::optional<Console> console;
};

// Firecracker's id rule: non-empty, at most 64 characters of [A-Za-z0-9_].
bool valid_id(const std::string& id);

// The kernel command line for `config`: boot_args (or the default) plus
// root= for the root drive, as Firecracker adds it.
std::string kernel_cmdline(const VmConfig& config);

// Range checks of every field; the first problem as a one-line error.
Expected<void> validate(const VmConfig& config);

}  // namespace hvz::config
