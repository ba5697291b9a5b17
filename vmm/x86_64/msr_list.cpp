// The MSR allowlist for vCPU snapshots and the reader that skips MSRs KVM
// refuses (see msr_list.hpp).
#include "vmm/x86_64/msr_list.hpp"

#include <algorithm>
#include <array>

namespace hvz::x86_64 {
namespace {

struct MsrRange {
  std::uint32_t first;
  std::uint32_t count;
  bool contains(std::uint32_t index) const { return index >= first && index - first < count; }
};

// Guest state KVM keeps in MSRs. Left out on purpose: performance counters
// (hvz exposes no PMU), VMX capability MSRs (host facts; no nested
// virtualisation), Hyper-V MSRs, write-only MSRs (PRED_CMD, FLUSH_CMD),
// IA32_ARCH_CAPABILITIES (a host fact KVM fills in per vCPU), and
// MSR_KVM_ASYNC_PF_ACK (a write acknowledges, there is nothing to keep).
constexpr std::array kSavedRanges = {
    MsrRange{msr::kTsc, 1},
    MsrRange{msr::kKvmWallClock, 2},  // kvm-clock, first-generation MSRs
    MsrRange{msr::kApicBase, 1},
    MsrRange{0x3a, 2},       // IA32_FEATURE_CONTROL, IA32_TSC_ADJUST
    MsrRange{0x48, 1},       // IA32_SPEC_CTRL
    MsrRange{0x8b, 1},       // IA32_BIOS_SIGN_ID (microcode revision)
    MsrRange{0xce, 1},       // MSR_PLATFORM_INFO (CPUID faulting)
    MsrRange{0x140, 1},      // MSR_MISC_FEATURES_ENABLES
    MsrRange{0x174, 3},      // IA32_SYSENTER_CS/ESP/EIP
    MsrRange{0x17a, 1},      // IA32_MCG_STATUS (MCG_CAP is KVM_X86_SETUP_MCE config)
    MsrRange{0x1a0, 1},      // IA32_MISC_ENABLE
    MsrRange{0x1d9, 1},      // IA32_DEBUGCTL
    MsrRange{0x200, 0x100},  // MTRRs and IA32_PAT (0x277)
    MsrRange{0x400, 0x80},   // machine-check banks MCi_CTL..MCi_MISC
    MsrRange{msr::kTscDeadline, 1},
    MsrRange{0xda0, 1},       // IA32_XSS
    MsrRange{msr::kEfer, 5},  // EFER, STAR, LSTAR, CSTAR, SFMASK
    MsrRange{0xc0000100, 4},  // FS_BASE, GS_BASE, KERNEL_GS_BASE, TSC_AUX
    MsrRange{0xc0010015, 1},  // AMD HWCR
    MsrRange{msr::kKvmWallClockNew, msr::kKvmAsyncPfAck - msr::kKvmWallClockNew},
    // ^ kvm-clock, async page faults, steal time, PV EOI, poll control
};

}  // namespace

bool msr_should_save(std::uint32_t index) {
  // IA32_MCG_CTL reads only when MCG_CAP says it exists, which KVM's
  // default MCG_CAP does not (reading it fails on some kernels).
  if (index == msr::kMcgCtl) return false;
  return std::any_of(kSavedRanges.begin(), kSavedRanges.end(),
                     [index](const MsrRange& r) { return r.contains(index); });
}

std::vector<std::uint32_t> msrs_to_save(std::span<const std::uint32_t> kvm_list) {
  std::vector<std::uint32_t> out;
  for (std::uint32_t index : kvm_list) {
    if (!msr_should_save(index)) continue;
    if (std::find(out.begin(), out.end(), index) != out.end()) continue;
    out.push_back(index);
  }
  return out;
}

Expected<std::vector<MsrEntry>> read_msrs(std::span<const std::uint32_t> indices,
                                          const MsrReader& read) {
  std::vector<kvm_msr_entry> entries(indices.size());
  for (std::size_t i = 0; i < indices.size(); ++i) entries[i].index = indices[i];
  std::vector<MsrEntry> out;
  out.reserve(indices.size());
  std::size_t pos = 0;
  // Each round either reads to the end or skips one refused MSR, so this
  // ends after at most indices.size() + 1 rounds.
  while (pos < entries.size()) {
    auto got = read(std::span<kvm_msr_entry>(entries).subspan(pos));
    if (!got) return tl::unexpected(got.error());
    const std::size_t n = std::min(*got, entries.size() - pos);
    for (std::size_t i = pos; i < pos + n; ++i) {
      out.push_back(MsrEntry{entries[i].index, entries[i].data});
    }
    pos += n;
    if (pos < entries.size()) ++pos;  // entries[pos] was refused: leave it out
  }
  return out;
}

}  // namespace hvz::x86_64
