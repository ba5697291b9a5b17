// VmConfig validation, the PATCH merge of rate limiters, ids, MACs (see
// vm_config.hpp).
#include "vmm/config/vm_config.hpp"

#include <cstdio>

namespace hvz::config {

Expected<void> validate(const VmConfig& config) {
  const auto& m = config.machine_config;
  if (m.vcpu_count < 1 || m.vcpu_count > kMaxVcpus) {
    return make_error(Errc::kInvalidArgument, "vcpu_count must be between 1 and " +
                                                  std::to_string(kMaxVcpus) + ", not " +
                                                  std::to_string(m.vcpu_count));
  }
  if (m.mem_size_mib < kMinMemoryMib || m.mem_size_mib > kMaxMemoryMib) {
    return make_error(Errc::kInvalidArgument, "mem_size_mib must be between " +
                                                  std::to_string(kMinMemoryMib) + " and " +
                                                  std::to_string(kMaxMemoryMib) + ", not " +
                                                  std::to_string(m.mem_size_mib));
  }
  if (m.huge_pages == HugePages::k2M && m.mem_size_mib % 2 != 0) {
    return make_error(Errc::kInvalidArgument,
                      "mem_size_mib must be a multiple of 2 with 2M huge pages");
  }
  if (m.smt) {
    return make_error(Errc::kInvalidArgument, "smt is not supported (one thread per core)");
  }
  if (config.drives.size() > kMaxDrives) {
    return make_error(Errc::kInvalidArgument,
                      "at most " + std::to_string(kMaxDrives) + " drives are supported");
  }
  std::size_t roots = 0;
  for (std::size_t i = 0; i < config.drives.size(); ++i) {
    const auto& d = config.drives[i];
    if (!valid_id(d.drive_id)) {
      return make_error(Errc::kInvalidArgument,
                        "invalid drive_id '" + d.drive_id + "': use 1-64 of A-Z, a-z, 0-9, _");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (config.drives[j].drive_id == d.drive_id) {
        return make_error(Errc::kInvalidArgument, "duplicate drive_id '" + d.drive_id + "'");
      }
    }
    if (d.path_on_host.empty()) {
      return make_error(Errc::kInvalidArgument, "drive '" + d.drive_id + "' has no path_on_host");
    }
    if (d.is_root_device) ++roots;
  }
  if (roots > 1) return make_error(Errc::kInvalidArgument, "more than one root drive");
  std::vector<InterfaceName> names;
  for (const auto& n : config.network_interfaces) names.push_back({n.iface_id, n.host_dev_name});
  if (auto ok = validate_interface_names(names); !ok) return ok;
  if (config.console && config.console->mode != Console::Mode::kStdio &&
      config.console->path.empty()) {
    return make_error(Errc::kInvalidArgument, "console: a path is needed for file or socket");
  }
  if (!config.boot_source || config.boot_source->kernel_image_path.empty()) {
    return make_error(Errc::kInvalidArgument,
                      "no kernel image given (boot-source.kernel_image_path)");
  }
  return {};
}

}  // namespace hvz::config

namespace hvz::config {

Expected<void> validate_interface_names(const std::vector<InterfaceName>& names) {
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& n = names[i];
    if (!valid_id(n.iface_id)) {
      return make_error(Errc::kInvalidArgument,
                        "invalid iface_id '" + n.iface_id + "': use 1-64 of A-Z, a-z, 0-9, _");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (names[j].iface_id == n.iface_id) {
        return make_error(Errc::kInvalidArgument, "duplicate iface_id '" + n.iface_id + "'");
      }
      if (names[j].host_dev_name == n.host_dev_name) {
        return make_error(Errc::kInvalidArgument,
                          "host_dev_name '" + n.host_dev_name + "' used twice");
      }
    }
    if (n.host_dev_name.empty() || n.host_dev_name.size() >= 16) {
      return make_error(Errc::kInvalidArgument,
                        "interface '" + n.iface_id + "': host_dev_name must be 1-15 characters");
    }
  }
  return {};
}

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

RateLimiterConfig merge_rate_limiter(const std::optional<RateLimiterConfig>& current,
                                     const RateLimiterConfig& update) {
  RateLimiterConfig merged = current.value_or(RateLimiterConfig{});
  if (update.bandwidth) merged.bandwidth = update.bandwidth;
  if (update.ops) merged.ops = update.ops;
  return merged;
}

std::string kernel_cmdline(const VmConfig& config) {
  std::string cmdline = kDefaultBootArgs;
  if (config.boot_source && config.boot_source->boot_args) cmdline = *config.boot_source->boot_args;
  for (const auto& d : config.drives) {
    if (!d.is_root_device) continue;
    // The root drive is attached first, so it is /dev/vda.
    cmdline += d.partuuid ? " root=PARTUUID=" + *d.partuuid : std::string(" root=/dev/vda");
    cmdline += d.is_read_only ? " ro" : " rw";
  }
  return cmdline;
}

}  // namespace hvz::config

namespace hvz::config {

std::optional<std::array<std::uint8_t, 6>> parse_mac(const std::string& text) {
  if (text.size() != 17) return std::nullopt;
  std::array<std::uint8_t, 6> mac{};
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < 6; ++i) {
    const int hi = hex(text[i * 3]);
    const int lo = hex(text[i * 3 + 1]);
    if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != ':')) return std::nullopt;
    mac[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return mac;
}

std::string format_mac(const std::array<std::uint8_t, 6>& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                mac[4], mac[5]);
  return buf;
}

}  // namespace hvz::config
