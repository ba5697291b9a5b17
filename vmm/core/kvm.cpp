// KVM ioctl wrappers (see kvm.hpp).
#include "vmm/core/kvm.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>

namespace hvz {
namespace {

constexpr int kStableApiVersion = 12;

}  // namespace

Expected<Kvm> Kvm::open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return sys_error("open " + path);
  int version = ::ioctl(fd.get(), KVM_GET_API_VERSION, 0);
  if (version < 0) return sys_error("KVM_GET_API_VERSION");
  if (version != kStableApiVersion) {
    return make_error(Errc::kUnsupported, "KVM API version " + std::to_string(version) +
                                              ", expected " + std::to_string(kStableApiVersion));
  }
  return Kvm(std::move(fd));
}

int Kvm::check_extension(int capability) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability);
  return r < 0 ? 0 : r;
}

Expected<void> Kvm::require_extension(int capability, const char* name) const {
  if (check_extension(capability) > 0) return {};
  return make_error(Errc::kUnsupported, std::string("KVM lacks the required capability ") + name);
}

Expected<int> Kvm::vcpu_mmap_size() const {
  int size = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size < 0) return sys_error("KVM_GET_VCPU_MMAP_SIZE");
  if (static_cast<std::size_t>(size) < sizeof(kvm_run)) {
    return make_error(Errc::kUnsupported, "KVM_GET_VCPU_MMAP_SIZE smaller than struct kvm_run");
  }
  return size;
}

Expected<VmFd> Kvm::create_vm() const {
  auto run_size = vcpu_mmap_size();
  if (!run_size) return tl::unexpected(run_size.error());
  int fd;
  do {
    // KVM_CREATE_VM may fail with EINTR while the host is busy.
    fd = ::ioctl(fd_.get(), KVM_CREATE_VM, 0);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return sys_error("KVM_CREATE_VM");
  return VmFd(UniqueFd(fd), *run_size);
}

Expected<void> VmFd::set_user_memory_region(std::uint32_t slot, std::uint64_t guest_phys,
                                            std::span<std::byte> host, std::uint32_t flags) const {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = guest_phys;
  region.memory_size = host.size();
  region.userspace_addr = reinterpret_cast<std::uintptr_t>(host.data());
  if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    return sys_error("KVM_SET_USER_MEMORY_REGION");
  }
  return {};
}

Expected<VcpuFd> VmFd::create_vcpu(std::uint32_t id) const {
  UniqueFd fd(::ioctl(fd_.get(), KVM_CREATE_VCPU, id));
  if (!fd) return sys_error("KVM_CREATE_VCPU " + std::to_string(id));
  auto run =
      MmapRegion::of_fd(fd.get(), static_cast<std::size_t>(run_size_), PROT_READ | PROT_WRITE);
  if (!run) return tl::unexpected(run.error());
  return VcpuFd(std::move(fd), std::move(*run));
}

Expected<void> VcpuFd::run() const {
  if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) return sys_error("KVM_RUN");
  return {};
}

Expected<kvm_regs> VcpuFd::regs() const {
  kvm_regs r{};
  if (::ioctl(fd_.get(), KVM_GET_REGS, &r) < 0) return sys_error("KVM_GET_REGS");
  return r;
}

Expected<void> VcpuFd::set_regs(const kvm_regs& regs) const {
  if (::ioctl(fd_.get(), KVM_SET_REGS, &regs) < 0) return sys_error("KVM_SET_REGS");
  return {};
}

Expected<kvm_sregs> VcpuFd::sregs() const {
  kvm_sregs s{};
  if (::ioctl(fd_.get(), KVM_GET_SREGS, &s) < 0) return sys_error("KVM_GET_SREGS");
  return s;
}

Expected<void> VcpuFd::set_sregs(const kvm_sregs& sregs) const {
  if (::ioctl(fd_.get(), KVM_SET_SREGS, &sregs) < 0) return sys_error("KVM_SET_SREGS");
  return {};
}

Expected<std::span<std::uint8_t>> VcpuFd::io_data() const {
  const kvm_run& r = run_state();
  const std::uint64_t offset = r.io.data_offset;
  const std::uint64_t len = std::uint64_t{r.io.size} * r.io.count;
  if (offset > run_.size() || len > run_.size() - offset) {
    return make_error(Errc::kOutOfRange, "KVM_EXIT_IO data outside the kvm_run mapping");
  }
  auto* base = static_cast<std::uint8_t*>(run_.data());
  return std::span<std::uint8_t>(base + offset, len);
}

std::span<std::uint8_t> VcpuFd::mmio_data() const {
  kvm_run& r = run_state();
  return {r.mmio.data, std::min<std::size_t>(r.mmio.len, sizeof(r.mmio.data))};
}

std::string exit_reason_name(std::uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN:
      return "KVM_EXIT_UNKNOWN";
    case KVM_EXIT_EXCEPTION:
      return "KVM_EXIT_EXCEPTION";
    case KVM_EXIT_IO:
      return "KVM_EXIT_IO";
    case KVM_EXIT_HLT:
      return "KVM_EXIT_HLT";
    case KVM_EXIT_MMIO:
      return "KVM_EXIT_MMIO";
    case KVM_EXIT_SHUTDOWN:
      return "KVM_EXIT_SHUTDOWN";
    case KVM_EXIT_FAIL_ENTRY:
      return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_INTR:
      return "KVM_EXIT_INTR";
    case KVM_EXIT_INTERNAL_ERROR:
      return "KVM_EXIT_INTERNAL_ERROR";
    case KVM_EXIT_SYSTEM_EVENT:
      return "KVM_EXIT_SYSTEM_EVENT";
    default:
      return "exit reason " + std::to_string(reason);
  }
}

}  // namespace hvz
