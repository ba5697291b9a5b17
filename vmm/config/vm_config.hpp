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
#include "vmm/core/log.hpp"

namespace hvz::config {

inline constexpr const char* kDefaultBootArgs = "console=ttyS0 reboot=k panic=1 pci=off";
inline constexpr std::uint32_t kMaxVcpus = 32;
inline constexpr std::uint32_t kMinMemoryMib = 16;
inline constexpr std::uint32_t kMaxMemoryMib = 1u << 20;  // 1 TiB

struct BootSource {
  std::string kernel_image_path;
  std::optional<std::string> initrd_path;
  std::optional<std::string> boot_args;  // unset: kDefaultBootArgs
  bool operator==(const BootSource&) const = default;
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
  // KVM dirty page tracking of guest memory, for Diff snapshots.
  bool track_dirty_pages = false;
  bool operator==(const MachineConfig&) const = default;
};

// Firecracker's token bucket: `size` tokens (bytes or operations), refilled
// completely every `refill_time_ms`; `one_time_burst` extra tokens spent
// first and never refilled. size 0 or refill_time_ms 0: no limit.
struct TokenBucketConfig {
  std::uint64_t size = 0;
  std::uint64_t one_time_burst = 0;
  std::uint64_t refill_time_ms = 0;
  bool operator==(const TokenBucketConfig&) const = default;
};

// Firecracker's rate_limiter object: an optional bucket for bytes and one
// for operations (block requests, network frames).
struct RateLimiterConfig {
  std::optional<TokenBucketConfig> bandwidth;
  std::optional<TokenBucketConfig> ops;
  bool operator==(const RateLimiterConfig&) const = default;
};

// Drive I/O engine, Firecracker's names: kSync = hvz's worker thread doing
// pread/pwrite, kAsync = io_uring.
enum class IoEngine { kSync, kAsync };

// Firecracker's drive cache_type. hvz honours the guest's flushes either
// way; the value is kept so that the configuration reads back as given.
enum class CacheType { kUnsafe, kWriteback };

// A virtio-blk drive (Firecracker's "drives" entry).
struct Drive {
  std::string drive_id;
  std::string path_on_host;
  bool is_root_device = false;
  bool is_read_only = false;
  std::optional<std::string> partuuid;  // root=PARTUUID=... instead of /dev/vda
  IoEngine io_engine = IoEngine::kSync;
  std::optional<RateLimiterConfig> rate_limiter;
  CacheType cache_type = CacheType::kUnsafe;
  bool operator==(const Drive&) const = default;
};

inline constexpr std::size_t kMaxDrives = 16;

// A virtio-net interface backed by a TAP device opened by name
// (Firecracker's "network-interfaces" entry).
struct NetworkInterface {
  std::string iface_id;
  std::string host_dev_name;
  std::optional<std::array<std::uint8_t, 6>> guest_mac;
  std::optional<RateLimiterConfig> rx_rate_limiter;
  std::optional<RateLimiterConfig> tx_rate_limiter;
  bool operator==(const NetworkInterface&) const = default;
};

// Firecracker's "logger": where hvz's log lines go and how verbose.
struct LoggerConfig {
  using Level = log::Level;  // named by log::parse_level() / log::level_name()
  std::string log_path;      // a file (appended) or a FIFO
  Level level = Level::kWarn;
  bool show_level = true;
  bool show_log_origin = false;
  bool operator==(const LoggerConfig&) const = default;
};

// Firecracker's "metrics": one JSON object per line appended to
// metrics_path, periodically and on the FlushMetrics action.
struct MetricsConfig {
  std::string metrics_path;
  bool operator==(const MetricsConfig&) const = default;
};

// Firecracker's PUT /serial: the serial console's output to a file instead
// of stdout.
struct SerialConfig {
  std::string serial_out_path;
  bool operator==(const SerialConfig&) const = default;
};

// Firecracker's "entropy": a virtio-rng device.
struct EntropyConfig {
  std::optional<RateLimiterConfig> rate_limiter;
  bool operator==(const EntropyConfig&) const = default;
};

// hvz's own "console" section: a virtio-console port (hvc0) beside the
// serial console. kStdio: stdout/stdin (the serial console then gets no
// input); kFile: output appended to `path`, no input; kSocket: hvz
// connects to the Unix socket at `path` for both directions.
struct Console {
  enum class Mode { kStdio, kFile, kSocket };
  Mode mode = Mode::kStdio;
  std::string path;
  bool operator==(const Console&) const = default;
};

// A PATCHed rate limiter (Firecracker's RateLimiterUpdate): each bucket
// the update gives replaces the current one, a bucket it leaves out stays.
// An empty bucket given (size or refill time 0) thus switches that bucket
// off; the result is complete (what the device applies as a whole) but not
// made effective (api's effective_limiter() drops buckets that limit
// nothing).
RateLimiterConfig merge_rate_limiter(const std::optional<RateLimiterConfig>& current,
                                     const RateLimiterConfig& update);

// "aa:bb:cc:dd:ee:ff" -> bytes; nullopt when malformed.
std::optional<std::array<std::uint8_t, 6>> parse_mac(const std::string& text);
std::string format_mac(const std::array<std::uint8_t, 6>& mac);

struct VmConfig {
  std::optional<BootSource> boot_source;
  MachineConfig machine_config;
  std::vector<Drive> drives;
  std::vector<NetworkInterface> network_interfaces;
  std::optional<Console> console;
  std::optional<LoggerConfig> logger;
  std::optional<MetricsConfig> metrics;
  std::optional<SerialConfig> serial;
  std::optional<EntropyConfig> entropy;
  bool operator==(const VmConfig&) const = default;
};

// Firecracker's id rule: non-empty, at most 64 characters of [A-Za-z0-9_].
bool valid_id(const std::string& id);

// A network interface's names: its id and its TAP device's.
struct InterfaceName {
  const std::string& iface_id;
  const std::string& host_dev_name;
};
// Every iface_id valid (valid_id()) and given once, every host_dev_name
// 1-15 characters and given once: the first problem as an error.
Expected<void> validate_interface_names(const std::vector<InterfaceName>& names);

// The kernel command line for `config`: boot_args (or the default) plus
// root= for the root drive, as Firecracker adds it.
std::string kernel_cmdline(const VmConfig& config);

// Range checks of every field; the first problem as a one-line error.
Expected<void> validate(const VmConfig& config);

}  // namespace hvz::config
