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
  if (!config.boot_source || config.boot_source->kernel_image_path.empty()) {
    return make_error(Errc::kInvalidArgument,
                      "no kernel image given (boot-source.kernel_image_path)");
  }
  return {};
}

}  // namespace hvz::config
