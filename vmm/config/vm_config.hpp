// The VM's configuration as plain structs: one model for the command line,
// the config file and (later) the API. JSON mapping lives in api/; checks
// that need no I/O live in validate().
#pragma once

#include <cstdint>
#include <optional>
#include <string>

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
  std::uint32_t vcpu_count = 1;
  std::uint32_t mem_size_mib = 128;
  bool smt = false;
  HugePages huge_pages = HugePages::kNone;
};

struct VmConfig {
  std::optional<BootSource> boot_source;
  MachineConfig machine_config;
};

// Range checks of every field; the first problem as a one-line error.
Expected<void> validate(const VmConfig& config);

}  // namespace hvz::config
