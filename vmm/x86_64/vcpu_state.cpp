// Saving and restoring a vCPU through KVM (see vcpu_state.hpp). The order
// of the ioctls follows from how KVM's handlers depend on each other; the
// comments in save_vcpu_state and restore_vcpu_state say which depends on
// which.
#include "vmm/x86_64/vcpu_state.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <type_traits>

namespace hvz::x86_64 {
namespace {

constexpr std::size_t kMaxCpuidLeaves = 256;  // KVM_MAX_CPUID_ENTRIES
constexpr std::size_t kMinXsaveWords = 4096 / sizeof(std::uint32_t);
constexpr std::size_t kApicLvtTimer = 0x320;
constexpr unsigned kLvtTimerModeShift = 17;
constexpr std::uint32_t kLvtTimerModeTscDeadline = 2;
// Two TSC frequencies within 250 ppm are the same clock calibrated twice.
constexpr std::uint64_t kTscTolerancePpm = 250;

template <typename T>
bool same_bytes(const T& a, const T& b) {
  static_assert(std::is_trivially_copyable_v<T>);
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <typename T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  static_assert(std::is_trivially_copyable_v<T>);
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

std::string hex_name(const char* prefix, std::uint32_t value) {
  char text[48];
  std::snprintf(text, sizeof text, "%s%#x", prefix, static_cast<unsigned>(value));
  return text;
}

// Adds error context without losing the ioctl name and errno.
template <typename T>
Expected<T> with_context(Expected<T> r, const char* what) {
  if (r) return r;
  return in_context(std::string(what) + ": ", r.error());
}

}  // namespace

bool operator==(const VcpuState& a, const VcpuState& b) {
  return differences(a, b).empty();
}

std::vector<std::string> differences(const VcpuState& a, const VcpuState& b) {
  std::vector<std::string> out;
  auto check = [&out](const char* name, bool same) {
    if (!same) out.emplace_back(name);
  };
  check("cpuid", same_bytes(a.cpuid, b.cpuid));
  check("regs", same_bytes(a.regs, b.regs));
  check("sregs", same_bytes(a.sregs, b.sregs));
  check("xsave", same_bytes(a.xsave, b.xsave));
  check("xcrs", same_bytes(a.xcrs, b.xcrs));
  check("debugregs", same_bytes(a.debugregs, b.debugregs));
  check("lapic", same_bytes(a.lapic, b.lapic));
  check("mp_state", same_bytes(a.mp_state, b.mp_state));
  check("events", same_bytes(a.events, b.events));
  check("tsc_khz", a.tsc_khz == b.tsc_khz);
  // MSRs one by one, so a test can ignore the ones that run (IA32_TSC).
  bool same_list = a.msrs.size() == b.msrs.size();
  for (std::size_t i = 0; same_list && i < a.msrs.size(); ++i) {
    same_list = a.msrs[i].index == b.msrs[i].index;
  }
  if (!same_list) {
    out.emplace_back("msr list");
  } else {
    for (std::size_t i = 0; i < a.msrs.size(); ++i) {
      if (a.msrs[i].value != b.msrs[i].value) out.push_back(hex_name("msr ", a.msrs[i].index));
    }
  }
  return out;
}

Expected<void> validate(const VcpuState& state) {
  if (state.cpuid.size() > kMaxCpuidLeaves) {
    return make_error(Errc::kInvalidArgument, "vCPU state: " + std::to_string(state.cpuid.size()) +
                                                  " CPUID leaves, KVM takes at most 256");
  }
  if (state.xsave.size() < kMinXsaveWords) {
    return make_error(Errc::kInvalidArgument,
                      "vCPU state: XSAVE area of " +
                          std::to_string(state.xsave.size() * sizeof(std::uint32_t)) +
                          " bytes, shorter than 4096");
  }
  return {};
}

bool lapic_timer_tsc_deadline(const kvm_lapic_state& lapic) {
  std::uint32_t lvtt;
  std::memcpy(&lvtt, lapic.regs + kApicLvtTimer, sizeof lvtt);
  return ((lvtt >> kLvtTimerModeShift) & 3) == kLvtTimerModeTscDeadline;
}

std::vector<std::pair<std::uint32_t, std::uint64_t>> msrs_for_restore(
    const std::vector<MsrEntry>& saved, bool tsc_deadline_mode) {
  std::vector<std::pair<std::uint32_t, std::uint64_t>> out;
  out.reserve(saved.size());
  std::optional<std::uint64_t> tsc;
  std::vector<std::uint64_t> deadlines;
  for (const MsrEntry& m : saved) {
    if (m.index == msr::kTscDeadline) {
      deadlines.push_back(m.value);
      continue;
    }
    if (m.index == msr::kTsc) tsc = m.value;
    out.emplace_back(m.index, m.value);
  }
  for (std::uint64_t deadline : deadlines) {
    if (deadline == 0 && tsc_deadline_mode && tsc) deadline = *tsc;
    out.emplace_back(msr::kTscDeadline, deadline);
  }
  return out;
}

bool tsc_scaling_needed(std::uint32_t host_khz, std::uint32_t saved_khz) {
  const std::uint64_t diff = host_khz > saved_khz ? host_khz - saved_khz : saved_khz - host_khz;
  return diff * 1'000'000 > std::uint64_t{saved_khz} * kTscTolerancePpm;
}

Expected<VcpuState> save_vcpu_state(const VcpuFd& vcpu, std::span<const std::uint32_t> msrs) {
  VcpuState state;
  // KVM_GET_MP_STATE first: it processes pending INIT/SIPI events, which
  // may change registers and the LAPIC read below.
  auto mp_state = vcpu.mp_state();
  if (!mp_state) return tl::unexpected(mp_state.error());
  state.mp_state = *mp_state;
  auto regs = vcpu.regs();
  if (!regs) return tl::unexpected(regs.error());
  state.regs = *regs;
  auto sregs = vcpu.sregs();
  if (!sregs) return tl::unexpected(sregs.error());
  state.sregs = *sregs;
  auto xsave = vcpu.xsave();
  if (!xsave) return tl::unexpected(xsave.error());
  state.xsave = std::move(*xsave);
  auto xcrs = vcpu.xcrs();
  if (!xcrs) return tl::unexpected(xcrs.error());
  state.xcrs = *xcrs;
  auto debugregs = vcpu.debugregs();
  if (!debugregs) return tl::unexpected(debugregs.error());
  state.debugregs = *debugregs;
  auto lapic = vcpu.lapic();
  if (!lapic) return tl::unexpected(lapic.error());
  state.lapic = *lapic;
  // Optional: old hosts lack KVM_CAP_GET_TSC_KHZ.
  if (auto khz = vcpu.tsc_khz(); khz && *khz > 0) state.tsc_khz = *khz;
  auto cpuid = vcpu.cpuid();
  if (!cpuid) return tl::unexpected(cpuid.error());
  state.cpuid = std::move(*cpuid);
  auto saved_msrs =
      read_msrs(msrs, [&vcpu](std::span<kvm_msr_entry> entries) { return vcpu.get_msrs(entries); });
  if (!saved_msrs) return tl::unexpected(saved_msrs.error());
  state.msrs = std::move(*saved_msrs);
  // Events last: the reads above may still queue or deliver an event.
  auto events = vcpu.events();
  if (!events) return tl::unexpected(events.error());
  state.events = *events;
  return state;
}

Expected<void> restore_vcpu_state(const VcpuFd& vcpu, const VcpuState& state) {
  if (auto r = validate(state); !r) return r;
  // The TSC frequency before anything that reads or writes the TSC.
  if (state.tsc_khz) {
    auto host_khz = with_context(vcpu.tsc_khz(), "restoring the TSC frequency");
    if (!host_khz) return tl::unexpected(host_khz.error());
    if (tsc_scaling_needed(*host_khz, *state.tsc_khz)) {
      if (auto r = vcpu.set_tsc_khz(*state.tsc_khz); !r) return r;
    }
  }
  // CPUID before everything else: KVM checks registers, XSAVE features
  // and MSRs against it.
  if (!state.cpuid.empty()) {
    if (auto r = vcpu.set_cpuid(state.cpuid); !r) return r;
  }
  // KVM_SET_REGS drops a pending exception, so it comes before the events;
  // KVM_SET_SREGS holds the APIC base, so it comes before the LAPIC.
  if (auto r = vcpu.set_regs(state.regs); !r) return r;
  if (auto r = vcpu.set_sregs(state.sregs); !r) return r;
  if (auto r = vcpu.set_xsave(state.xsave); !r) return r;
  if (auto r = vcpu.set_xcrs(state.xcrs); !r) return r;
  if (auto r = vcpu.set_debugregs(state.debugregs); !r) return r;
  // The LAPIC before the MSRs: a TSC deadline is only taken by a LAPIC
  // whose timer is in TSC-deadline mode.
  if (auto r = vcpu.set_lapic(state.lapic); !r) return r;
  if (auto r = vcpu.set_msrs(msrs_for_restore(state.msrs, lapic_timer_tsc_deadline(state.lapic)));
      !r) {
    return r;
  }
  // The MP state after the registers: KVM_SET_SREGS may itself mark the
  // boot vCPU runnable.
  if (auto r = vcpu.set_mp_state(state.mp_state); !r) return r;
  // KVM_GET_VCPU_EVENTS does not flag the NMI-pending and SIPI-vector
  // fields as valid, but they are: restore them too.
  kvm_vcpu_events events = state.events;
  events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
  if (auto r = vcpu.set_events(events); !r) return r;
  // Tell a kvmclock guest it was stopped on purpose; it fails harmlessly
  // when the guest does not use kvmclock.
  (void)vcpu.kvmclock_ctrl();
  return {};
}

Expected<void> complete_pending_exit(const VcpuFd& vcpu) {
  vcpu.set_immediate_exit(true);
  auto r = vcpu.run();
  vcpu.set_immediate_exit(false);
  if (r) {
    // Completing the exit needed another one (the next round of a string
    // I/O instruction): it is in kvm_run for the caller to handle.
    return make_error(Errc::kBusy, "KVM_RUN with immediate_exit: exit " +
                                       exit_reason_name(vcpu.run_state().exit_reason) +
                                       " still to handle");
  }
  if (r.error().sys_errno() != EINTR) return r;
  return {};
}

}  // namespace hvz::x86_64
