// VmConfig validation (see vm_config.hpp).
#include "vmm/config/vm_config.hpp"

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
  if (!config.boot_source || config.boot_source->kernel_image_path.empty()) {
    return make_error(Errc::kInvalidArgument,
                      "no kernel image given (boot-source.kernel_image_path)");
  }
  return {};
}

}  // namespace hvz::config

namespace hvz::config {

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
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
