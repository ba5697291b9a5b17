// KVM ioctl wrappers (see kvm.hpp).
#include "vmm/core/kvm.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <vector>

namespace hvz {
namespace {

constexpr int kStableApiVersion = 12;
// Far more CPUID leaves than any host reports (KVM answers E2BIG if not).
constexpr std::size_t kMaxCpuidEntries = 256;

// linux-libc-dev 6.1 declares the flexible arrays of kvm_cpuid2 and kvm_msrs
// with __DECLARE_FLEX_ARRAY, which in C++ adds an empty struct: sizeof grows
// from 8 to 12/16, the entries move, and the _IOW numbers derived from
// sizeof no longer match the kernel's (it answers EINVAL). So these headers
// and ioctl numbers are spelled out with the kernel's C layout.
struct CountHeader {
  std::uint32_t count;  // nent / nmsrs
  std::uint32_t padding;
};
static_assert(sizeof(CountHeader) == 8);
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CountHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CountHeader);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, CountHeader);

// A count header followed by its entries, in one 8-byte aligned buffer.
template <typename Entry>
class FlexBuffer {
 public:
  explicit FlexBuffer(std::size_t n)
      : storage_((sizeof(CountHeader) + n * sizeof(Entry) + sizeof(std::uint64_t) - 1) /
                 sizeof(std::uint64_t)) {}
  CountHeader* header() { return reinterpret_cast<CountHeader*>(storage_.data()); }
  Entry* entries() { return reinterpret_cast<Entry*>(header() + 1); }

 private:
  std::vector<std::uint64_t> storage_;  // zeroed
};

template <typename T>
Expected<void> ioctl_in(int fd, unsigned long request, const T* arg, const char* name) {
  if (::ioctl(fd, request, arg) < 0) return sys_error(name);
  return {};
}

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

Expected<std::vector<kvm_cpuid_entry2>> Kvm::supported_cpuid() const {
  FlexBuffer<kvm_cpuid_entry2> buf(kMaxCpuidEntries);
  buf.header()->count = kMaxCpuidEntries;
  if (::ioctl(fd_.get(), kGetSupportedCpuid, buf.header()) < 0) {
    return sys_error("KVM_GET_SUPPORTED_CPUID");
  }
  const std::size_t n = std::min<std::size_t>(buf.header()->count, kMaxCpuidEntries);
  return std::vector<kvm_cpuid_entry2>(buf.entries(), buf.entries() + n);
}

Expected<void> VmFd::set_tss_address(std::uint64_t addr) const {
  if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0) {
    return sys_error("KVM_SET_TSS_ADDR");
  }
  return {};
}

Expected<void> VmFd::set_identity_map_address(std::uint64_t addr) const {
  return ioctl_in(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr, "KVM_SET_IDENTITY_MAP_ADDR");
}

Expected<void> VmFd::create_irqchip() const {
  if (::ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) return sys_error("KVM_CREATE_IRQCHIP");
  return {};
}

Expected<void> VmFd::create_pit2() const {
  kvm_pit_config config{};
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  return ioctl_in(fd_.get(), KVM_CREATE_PIT2, &config, "KVM_CREATE_PIT2");
}

Expected<void> VmFd::register_irqfd(int eventfd, std::uint32_t gsi) const {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<std::uint32_t>(eventfd);
  irqfd.gsi = gsi;
  return ioctl_in(fd_.get(), KVM_IRQFD, &irqfd, "KVM_IRQFD");
}

Expected<void> VmFd::register_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len,
                                        std::uint64_t datamatch) const {
  kvm_ioeventfd io{};
  io.datamatch = datamatch;
  io.addr = addr;
  io.len = len;
  io.fd = eventfd;
  io.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
  return ioctl_in(fd_.get(), KVM_IOEVENTFD, &io, "KVM_IOEVENTFD");
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

Expected<void> VcpuFd::set_fpu(const kvm_fpu& fpu) const {
  return ioctl_in(fd_.get(), KVM_SET_FPU, &fpu, "KVM_SET_FPU");
}

Expected<void> VcpuFd::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) const {
  FlexBuffer<kvm_cpuid_entry2> buf(entries.size());
  buf.header()->count = static_cast<std::uint32_t>(entries.size());
  std::copy(entries.begin(), entries.end(), buf.entries());
  return ioctl_in(fd_.get(), kSetCpuid2, buf.header(), "KVM_SET_CPUID2");
}

Expected<void> VcpuFd::set_msrs(
    const std::vector<std::pair<std::uint32_t, std::uint64_t>>& msrs) const {
  FlexBuffer<kvm_msr_entry> buf(msrs.size());
  buf.header()->count = static_cast<std::uint32_t>(msrs.size());
  for (std::size_t i = 0; i < msrs.size(); ++i) {
    buf.entries()[i].index = msrs[i].first;
    buf.entries()[i].data = msrs[i].second;
  }
  int n = ::ioctl(fd_.get(), kSetMsrs, buf.header());
  if (n < 0) return sys_error("KVM_SET_MSRS");
  if (static_cast<std::size_t>(n) != msrs.size()) {
    char what[64];
    std::snprintf(what, sizeof what, "KVM_SET_MSRS refused MSR %#x",
                  static_cast<unsigned>(msrs[static_cast<std::size_t>(n)].first));
    return make_error(Errc::kUnsupported, what);
  }
  return {};
}

Expected<kvm_lapic_state> VcpuFd::lapic() const {
  kvm_lapic_state l{};
  if (::ioctl(fd_.get(), KVM_GET_LAPIC, &l) < 0) return sys_error("KVM_GET_LAPIC");
  return l;
}

Expected<void> VcpuFd::set_lapic(const kvm_lapic_state& lapic) const {
  return ioctl_in(fd_.get(), KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
}

Expected<kvm_mp_state> VcpuFd::mp_state() const {
  kvm_mp_state m{};
  if (::ioctl(fd_.get(), KVM_GET_MP_STATE, &m) < 0) return sys_error("KVM_GET_MP_STATE");
  return m;
}

Expected<kvm_vcpu_events> VcpuFd::events() const {
  kvm_vcpu_events e{};
  if (::ioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &e) < 0) return sys_error("KVM_GET_VCPU_EVENTS");
  return e;
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
