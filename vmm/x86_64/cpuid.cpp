// CPUID adjustment (see cpuid.hpp). Leaves follow Intel SDM vol. 2 "CPUID"
// and AMD APM vol. 3 appendix E.
#include "vmm/x86_64/cpuid.hpp"

#include <bit>

namespace hvz::x86_64 {
namespace {

constexpr std::uint32_t kLeafFeatures = 0x1;
constexpr std::uint32_t kLeafCacheParams = 0x4;
constexpr std::uint32_t kLeafTopology = 0xb;
constexpr std::uint32_t kLeafTopologyV2 = 0x1f;
constexpr std::uint32_t kLeafAmdSizes = 0x80000008;
constexpr std::uint32_t kLeafAmdTopology = 0x8000001e;

constexpr std::uint32_t kEcxHypervisor = 1u << 31;
constexpr std::uint32_t kEdxHtt = 1u << 28;

// Bits needed to number `count` items (x2APIC id shift).
std::uint32_t id_bits(std::uint32_t count) {
  return count <= 1 ? 0 : static_cast<std::uint32_t>(std::bit_width(count - 1));
}

}  // namespace

std::vector<kvm_cpuid_entry2> vcpu_cpuid(std::vector<kvm_cpuid_entry2> entries,
                                         std::uint32_t vcpu_id, std::uint32_t vcpu_count) {
  for (auto& e : entries) {
    switch (e.function) {
      case kLeafFeatures:
        // EBX[31:24] initial APIC id, EBX[23:16] logical processors per package.
        e.ebx = (e.ebx & 0xffff) | (vcpu_id << 24) | ((vcpu_count & 0xff) << 16);
        e.ecx |= kEcxHypervisor;
        if (vcpu_count > 1)
          e.edx |= kEdxHtt;
        else
          e.edx &= ~kEdxHtt;
        break;
      case kLeafCacheParams:
        // EAX[31:26] cores per package - 1; EAX[25:14] threads sharing this
        // cache - 1: private L1/L2, package-wide L3.
        if ((e.eax & 0x1f) != 0) {
          const std::uint32_t level = (e.eax >> 5) & 0x7;
          const std::uint32_t sharing = level >= 3 ? vcpu_count - 1 : 0;
          e.eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((vcpu_count - 1) & 0x3f) << 26);
        }
        break;
      case kLeafTopology:
      case kLeafTopologyV2:
        // Level 0: SMT (1 thread per core); level 1: cores (all vCPUs).
        e.edx = vcpu_id;
        if (e.index == 0) {
          e.eax = 0;
          e.ebx = 1;
          e.ecx = (1u << 8) | e.index;
        } else if (e.index == 1) {
          e.eax = id_bits(vcpu_count);
          e.ebx = vcpu_count;
          e.ecx = (2u << 8) | e.index;
        } else {
          e.eax = 0;
          e.ebx = 0;
          e.ecx = e.index;
        }
        break;
      case kLeafAmdSizes:
        // ECX[7:0] cores per package - 1; ECX[15:12] APIC id size.
        e.ecx = (e.ecx & ~0xf0ffu) | ((vcpu_count - 1) & 0xff) | (id_bits(vcpu_count) << 12);
        break;
      case kLeafAmdTopology:
        // EAX extended APIC id; EBX[15:8] threads per compute unit - 1 (0).
        e.eax = vcpu_id;
        e.ebx = (e.ebx & ~0xffffu) | (vcpu_id & 0xff);
        e.ecx = 0;
        break;
      default:
        break;
    }
  }
  return entries;
}

}  // namespace hvz::x86_64
