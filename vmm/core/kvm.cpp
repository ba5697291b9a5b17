// KVM ioctl wrappers (see kvm.hpp).
#include "vmm/core/kvm.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <string>
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
constexpr unsigned long kGetCpuid2 = _IOWR(KVMIO, 0x91, CountHeader);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, CountHeader);
constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, CountHeader);
// kvm_msr_list's header is one __u32 (C sizeof 4).
constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, std::uint32_t);
// kvm_xsave is 4 KiB in C; the C++ flex-array member makes it 4100 bytes.
struct XsaveRegion {
  std::uint32_t region[1024];
};
static_assert(sizeof(XsaveRegion) == 4096);
constexpr std::size_t kLegacyXsaveSize = sizeof(XsaveRegion);
constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveRegion);
constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveRegion);
constexpr unsigned long kGetXsave2 = _IOR(KVMIO, 0xcf, XsaveRegion);
// The structs passed whole keep their C sizes in C++ (the ioctl numbers
// encode them); a header change that broke this would fail here, not with
// EINVAL on a guest host.
static_assert(sizeof(kvm_irqchip) == 520 && sizeof(kvm_pit_state2) == 112);
static_assert(sizeof(kvm_clock_data) == 48 && sizeof(kvm_xcrs) == 392);
static_assert(sizeof(kvm_debugregs) == 128 && sizeof(kvm_vcpu_events) == 64);
static_assert(sizeof(kvm_lapic_state) == 1024 && sizeof(kvm_mp_state) == 4);
// KVM answers E2BIG to KVM_GET/SET_MSRS with MAX_IO_MSRS (256) or more.
constexpr std::size_t kMaxMsrsPerIoctl = 255;

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

// One value-initialised T filled by a read ioctl.
template <typename T>
Expected<T> ioctl_out(int fd, unsigned long request, const char* name) {
  T value{};
  if (::ioctl(fd, request, &value) < 0) return sys_error(name);
  return value;
}

std::string msr_message(const char* what, std::uint32_t index) {
  char text[64];
  std::snprintf(text, sizeof text, "%s refused MSR %#x", what, static_cast<unsigned>(index));
  return text;
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

Expected<std::vector<std::uint32_t>> Kvm::msr_index_list() const {
  // Ask with room for none: KVM answers E2BIG with the count filled in.
  std::uint32_t count = 0;
  if (::ioctl(fd_.get(), kGetMsrIndexList, &count) == 0) return std::vector<std::uint32_t>{};
  if (errno != E2BIG) return sys_error("KVM_GET_MSR_INDEX_LIST");
  std::vector<std::uint32_t> buf(std::size_t{count} + 1);
  buf[0] = count;
  if (::ioctl(fd_.get(), kGetMsrIndexList, buf.data()) < 0) {
    return sys_error("KVM_GET_MSR_INDEX_LIST");
  }
  const std::size_t n = std::min<std::size_t>(buf[0], count);
  return std::vector<std::uint32_t>(buf.begin() + 1,
                                    buf.begin() + 1 + static_cast<std::ptrdiff_t>(n));
}

int VmFd::check_extension(int capability) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability);
  return r < 0 ? 0 : r;
}

Expected<kvm_irqchip> VmFd::irqchip(std::uint32_t chip_id) const {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  if (::ioctl(fd_.get(), KVM_GET_IRQCHIP, &chip) < 0) return sys_error("KVM_GET_IRQCHIP");
  return chip;
}

Expected<void> VmFd::set_irqchip(const kvm_irqchip& chip) const {
  return ioctl_in(fd_.get(), KVM_SET_IRQCHIP, &chip, "KVM_SET_IRQCHIP");
}

Expected<kvm_pit_state2> VmFd::pit2() const {
  return ioctl_out<kvm_pit_state2>(fd_.get(), KVM_GET_PIT2, "KVM_GET_PIT2");
}

Expected<void> VmFd::set_pit2(const kvm_pit_state2& pit) const {
  return ioctl_in(fd_.get(), KVM_SET_PIT2, &pit, "KVM_SET_PIT2");
}

Expected<kvm_clock_data> VmFd::clock() const {
  return ioctl_out<kvm_clock_data>(fd_.get(), KVM_GET_CLOCK, "KVM_GET_CLOCK");
}

Expected<void> VmFd::set_clock(const kvm_clock_data& clock) const {
  return ioctl_in(fd_.get(), KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK");
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
  // Asked per VM: the size can depend on the XSAVE features this process
  // was granted for guests (AMX).
  const int xsave2 = check_extension(KVM_CAP_XSAVE2);
  return VcpuFd(std::move(fd), std::move(*run), xsave2 > 0 ? static_cast<std::size_t>(xsave2) : 0);
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

Expected<kvm_fpu> VcpuFd::fpu() const {
  return ioctl_out<kvm_fpu>(fd_.get(), KVM_GET_FPU, "KVM_GET_FPU");
}

Expected<void> VcpuFd::set_fpu(const kvm_fpu& fpu) const {
  return ioctl_in(fd_.get(), KVM_SET_FPU, &fpu, "KVM_SET_FPU");
}

Expected<std::vector<kvm_cpuid_entry2>> VcpuFd::cpuid() const {
  FlexBuffer<kvm_cpuid_entry2> buf(kMaxCpuidEntries);
  buf.header()->count = kMaxCpuidEntries;
  if (::ioctl(fd_.get(), kGetCpuid2, buf.header()) < 0) return sys_error("KVM_GET_CPUID2");
  const std::size_t n = std::min<std::size_t>(buf.header()->count, kMaxCpuidEntries);
  return std::vector<kvm_cpuid_entry2>(buf.entries(), buf.entries() + n);
}

Expected<std::size_t> VcpuFd::get_msrs(std::span<kvm_msr_entry> entries) const {
  std::size_t done = 0;
  while (done < entries.size()) {
    const std::size_t n = std::min(entries.size() - done, kMaxMsrsPerIoctl);
    FlexBuffer<kvm_msr_entry> buf(n);
    buf.header()->count = static_cast<std::uint32_t>(n);
    for (std::size_t i = 0; i < n; ++i) buf.entries()[i].index = entries[done + i].index;
    const int got = ::ioctl(fd_.get(), kGetMsrs, buf.header());
    if (got < 0) return sys_error("KVM_GET_MSRS");
    const std::size_t read = std::min<std::size_t>(static_cast<std::size_t>(got), n);
    for (std::size_t i = 0; i < read; ++i) entries[done + i].data = buf.entries()[i].data;
    done += read;
    if (read < n) break;  // entries[done] is the one KVM refused
  }
  return done;
}

Expected<void> VcpuFd::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) const {
  FlexBuffer<kvm_cpuid_entry2> buf(entries.size());
  buf.header()->count = static_cast<std::uint32_t>(entries.size());
  std::copy(entries.begin(), entries.end(), buf.entries());
  return ioctl_in(fd_.get(), kSetCpuid2, buf.header(), "KVM_SET_CPUID2");
}

Expected<void> VcpuFd::set_msrs(
    const std::vector<std::pair<std::uint32_t, std::uint64_t>>& msrs) const {
  for (std::size_t done = 0; done < msrs.size();) {
    const std::size_t n = std::min(msrs.size() - done, kMaxMsrsPerIoctl);
    FlexBuffer<kvm_msr_entry> buf(n);
    buf.header()->count = static_cast<std::uint32_t>(n);
    for (std::size_t i = 0; i < n; ++i) {
      buf.entries()[i].index = msrs[done + i].first;
      buf.entries()[i].data = msrs[done + i].second;
    }
    const int set = ::ioctl(fd_.get(), kSetMsrs, buf.header());
    if (set < 0) return sys_error("KVM_SET_MSRS");
    if (static_cast<std::size_t>(set) < n) {
      return make_error(
          Errc::kUnsupported,
          msr_message("KVM_SET_MSRS", msrs[done + static_cast<std::size_t>(set)].first));
    }
    done += n;
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

Expected<void> VcpuFd::set_mp_state(const kvm_mp_state& state) const {
  return ioctl_in(fd_.get(), KVM_SET_MP_STATE, &state, "KVM_SET_MP_STATE");
}

Expected<kvm_vcpu_events> VcpuFd::events() const {
  kvm_vcpu_events e{};
  if (::ioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &e) < 0) return sys_error("KVM_GET_VCPU_EVENTS");
  return e;
}

Expected<void> VcpuFd::set_events(const kvm_vcpu_events& events) const {
  return ioctl_in(fd_.get(), KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS");
}

Expected<kvm_xcrs> VcpuFd::xcrs() const {
  return ioctl_out<kvm_xcrs>(fd_.get(), KVM_GET_XCRS, "KVM_GET_XCRS");
}

Expected<void> VcpuFd::set_xcrs(const kvm_xcrs& xcrs) const {
  return ioctl_in(fd_.get(), KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");
}

Expected<kvm_debugregs> VcpuFd::debugregs() const {
  return ioctl_out<kvm_debugregs>(fd_.get(), KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS");
}

Expected<void> VcpuFd::set_debugregs(const kvm_debugregs& regs) const {
  return ioctl_in(fd_.get(), KVM_SET_DEBUGREGS, &regs, "KVM_SET_DEBUGREGS");
}

std::size_t VcpuFd::xsave_size() const {
  return std::max(xsave2_size_, kLegacyXsaveSize);
}

Expected<std::vector<std::uint32_t>> VcpuFd::xsave() const {
  std::vector<std::uint32_t> area((xsave_size() + 3) / 4);
  if (xsave2_size_ > 0) {
    if (::ioctl(fd_.get(), kGetXsave2, area.data()) < 0) return sys_error("KVM_GET_XSAVE2");
  } else if (::ioctl(fd_.get(), kGetXsave, area.data()) < 0) {
    return sys_error("KVM_GET_XSAVE");
  }
  return area;
}

Expected<void> VcpuFd::set_xsave(std::span<const std::uint32_t> area) const {
  // KVM reads xsave_size() bytes whatever we pass: never less than that.
  std::vector<std::uint32_t> buf((xsave_size() + 3) / 4);
  if (area.size() > buf.size()) {
    return make_error(Errc::kInvalidArgument,
                      "KVM_SET_XSAVE: area of " + std::to_string(area.size_bytes()) +
                          " bytes, this host takes " + std::to_string(xsave_size()));
  }
  std::copy(area.begin(), area.end(), buf.begin());
  return ioctl_in(fd_.get(), kSetXsave, buf.data(), "KVM_SET_XSAVE");
}

Expected<std::uint32_t> VcpuFd::tsc_khz() const {
  const int khz = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  if (khz < 0) return sys_error("KVM_GET_TSC_KHZ");
  return static_cast<std::uint32_t>(khz);
}

Expected<void> VcpuFd::set_tsc_khz(std::uint32_t khz) const {
  if (::ioctl(fd_.get(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz)) < 0) {
    return sys_error("KVM_SET_TSC_KHZ");
  }
  return {};
}

Expected<void> VcpuFd::kvmclock_ctrl() const {
  if (::ioctl(fd_.get(), KVM_KVMCLOCK_CTRL, 0) < 0) return sys_error("KVM_KVMCLOCK_CTRL");
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
